"""Data layer: manifests, importers, validation, crops, augmentation, datasets, the corpus."""
