"""The archive's object store adapters, by short name."""

ARCHIVE_CLASS_FOR_TYPE = {
    "local": "shared.adapters.archive.local.LocalFolderArchive",
    "gcs": "shared.adapters.archive.gcs.GcsArchive",
}
