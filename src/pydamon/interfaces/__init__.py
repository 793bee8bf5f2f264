"""User interfaces over the engine: sysfs and debugfs models, FUSE adapter, trace stream."""
