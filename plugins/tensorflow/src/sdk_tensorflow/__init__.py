"""sdk-tensorflow: TensorFlow framework plugin (tf.keras layers, tf.function steps)."""
SDK_CORE_API = 1
