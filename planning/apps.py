from django.apps import AppConfig


class PlanningConfig(AppConfig):
    name = "planning"
    verbose_name = "Stock planning"

    def ready(self) -> None:
        from orchestration.steps import register_provider
        from planning.steps import PROVIDER

        register_provider(PROVIDER, replace=True)  # ready() may run twice
