"""CT volumes: find DICOM series and NIfTI volumes under a folder and read them in Hounsfield units.

``discover`` walks a folder tree and reads headers only, ``series`` groups and orders slices and
reads a series' voxels, ``nifti`` reads a NIfTI file into the same layout as a DICOM series.
"""
