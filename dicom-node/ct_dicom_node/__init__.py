"""The DICOM node: takes series from a PACS, asks the gateway, files the verdict back."""
