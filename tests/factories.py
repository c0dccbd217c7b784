import factory
from django.contrib.auth import get_user_model

from marketplaces.models import Product


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    is_staff = True
    is_superuser = True
    password = factory.django.Password("pw-123456")


class ProductFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Product

    sku = factory.Sequence(lambda n: f"SKU-{n:05d}")
    title = factory.Faker("sentence", nb_words=4)
    description = factory.Faker("paragraph")
    price = factory.Faker("pydecimal", left_digits=3, right_digits=2, positive=True, min_value=1)
    currency = "EUR"
    quantity = 1
    brand = factory.Faker("company")
    size = "M"
    category = "Jackets"
    images = factory.LazyFunction(lambda: ["https://img.example.test/a.jpg"])
