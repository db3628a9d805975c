"""Datastores the app adds to MONAI Label's (DICOMweb with offline DICOM-SEG)."""
