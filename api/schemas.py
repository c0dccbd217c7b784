"""Typed request and response bodies (they are the OpenAPI schema)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any, Literal

from ninja import Schema
from pydantic import Field, field_validator, model_validator

Marketplace = str
ShortText = Field(max_length=200)


class ProductsRef(Schema):
    """Which products: ids, SKUs (any case), or all of the tenant's."""

    ids: list[int] = Field(default_factory=list, max_length=10_000)
    skus: list[str] = Field(default_factory=list, max_length=10_000)
    all: bool = False

    @field_validator("ids")
    @classmethod
    def _positive(cls, ids: list[int]) -> list[int]:
        if any(i < 1 or i > 2**62 for i in ids):
            raise ValueError("product ids are positive integers")
        return ids

    @field_validator("skus")
    @classmethod
    def _sane_skus(cls, skus: list[str]) -> list[str]:
        for sku in skus:
            if not sku.strip() or len(sku) > 64 or any(ord(c) < 32 for c in sku):
                raise ValueError("a SKU is 1 to 64 printable characters")
        return skus


class JobsCreateIn(Schema):
    marketplaces: list[Marketplace] = Field(min_length=1, max_length=10)
    action: str = Field(default="publish", min_length=1, max_length=16)
    products: ProductsRef
    mode: Literal["parallel", "sequential"] = "parallel"
    priority: int = Field(default=0, ge=-1000, le=1000)
    max_retries: int = Field(default=3, ge=0, le=20)
    name: str = Field(default="", max_length=200)

    @field_validator("marketplaces")
    @classmethod
    def _names(cls, values: list[str]) -> list[str]:
        if any(not v or len(v) > 32 for v in values):
            raise ValueError("a marketplace name is 1 to 32 characters")
        return values


class JobsCreatedOut(Schema):
    batch_id: int
    job_ids: list[int]
    jobs: int


class TaskOut(Schema):
    step_order: int
    step_type: str
    status: str
    attempts: int
    reused_existing: bool
    output: dict[str, Any] | None
    error_message: str
    started_at: datetime | None = None
    completed_at: datetime | None = None


class RunOut(Schema):
    id: int
    attempt: int
    status: str
    retry_of_id: int | None
    worker: str
    started_at: datetime
    finished_at: datetime | None
    error_kind: str
    error_message: str
    failed_step: str


class JobOut(Schema):
    id: int
    batch_id: int | None
    product_id: int | None
    sku: str
    marketplace: str
    action: str
    status: str
    priority: int
    direct: bool
    max_retries: int
    retry_count: int
    cancel_requested: bool
    error_message: str
    run_after: datetime
    created_at: datetime
    started_at: datetime | None
    completed_at: datetime | None


class JobDetailOut(JobOut):
    result: Any = None
    tasks: list[TaskOut]
    runs: list[RunOut]


class JobPage(Schema):
    items: list[JobOut]
    next_cursor: str | None


class RetryFromStepIn(Schema):
    step_order: int = Field(ge=1, le=1000)


class BatchOut(Schema):
    id: int
    name: str
    mode: str
    status: str
    total_jobs: int
    completed_jobs: int
    failed_jobs: int
    cancelled_jobs: int
    skipped_jobs: int
    progress_percent: int
    created_by: str
    created_at: datetime
    started_at: datetime | None
    completed_at: datetime | None


class BatchDetailOut(BatchOut):
    counts: dict[str, int]


class BatchPage(Schema):
    items: list[BatchOut]
    next_cursor: str | None


class ProductUpsertIn(Schema):
    """A product by SKU; the SKU comes from the path."""

    title: str = Field(min_length=1, max_length=140)
    description: str = Field(default="", max_length=20_000)
    price: Decimal = Field(gt=0, max_digits=10, decimal_places=2)
    currency: str = Field(default="EUR", pattern=r"^[A-Z]{3}$", description="ISO 4217 code")
    quantity: int = Field(default=1, ge=0, le=2_147_483_647)
    brand: str = Field(default="", max_length=80)
    size: str = Field(default="", max_length=40)
    condition: Literal["new", "like_new", "very_good", "good", "satisfactory"] = "good"
    category: str = Field(default="", max_length=120)
    images: list[str] = Field(default_factory=list, max_length=20)

    @model_validator(mode="after")
    def _printable(self) -> ProductUpsertIn:
        for name in ("sku", "title", "brand", "size", "category"):
            value = getattr(self, name, "")
            if any(ord(c) < 32 for c in value):
                raise ValueError(f"{name} has control characters")
        if any(len(url) > 2000 for url in self.images):
            raise ValueError("an image URL has at most 2000 characters")
        return self


class ProductIn(ProductUpsertIn):
    """A product with its SKU (bulk upserts)."""

    sku: str = Field(min_length=1, max_length=64)


class ProductsBulkIn(Schema):
    products: list[ProductIn] = Field(min_length=1, max_length=1000)


class ProductOut(Schema):
    id: int
    sku: str
    title: str
    description: str
    price: Decimal
    currency: str
    quantity: int
    brand: str
    size: str
    condition: str
    category: str
    images: list[Any]
    created_at: datetime
    updated_at: datetime


class ProductPage(Schema):
    items: list[ProductOut]
    next_cursor: str | None


class UpsertOut(Schema):
    created: int
    updated: int
    ids: list[int]


class ResourceOut(Schema):
    key: str
    waiting: int
    retrying: int
    running: int
    pending: int
    concurrency: int | None
    rate_per_minute: int | None
    paused: bool


class ErrorOut(Schema):
    error: str
    message: str
    request_id: str | None
    details: Any = None
