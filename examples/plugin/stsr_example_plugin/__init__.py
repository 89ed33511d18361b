"""An example stsr-bench plugin: the method ``lr_smooth`` and the reader ``spot_table``."""
