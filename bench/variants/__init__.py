"""Turn the fp32 model into the variant being measured."""
