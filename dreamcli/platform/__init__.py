"""The platform's behaviour (what the three Workers do), in pure Python over the store and vendor ports."""
