from django.apps import AppConfig


class UploadsConfig(AppConfig):
    name = "uploads"
    verbose_name = "Uploads and imports"

    def ready(self) -> None:
        # The import is a job on the engine: its steps come from this provider ("catalog").
        from uploads.importing import register

        register()
