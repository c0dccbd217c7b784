from django.apps import AppConfig


class MarketplacesConfig(AppConfig):
    name = "marketplaces"
    verbose_name = "Marketplaces"

    def ready(self) -> None:
        # The engine looks adapters up by marketplace name; it never imports them.
        from marketplaces.adapters.registry import register_providers

        register_providers()
