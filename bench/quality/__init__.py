"""Quality in the loop: eval sets, the fp32 reference, and the metrics a variant is scored by."""
