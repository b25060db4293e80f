"""Administrator REST for the price table and platform fee. Transport only."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field, StrictInt

from coordinator.admin.pricing import PriceView
from coordinator.api.deps import AdminUser, ServicesDep

router = APIRouter(prefix="/api/v1/admin/pricing", tags=["admin"])


class PricingOut(BaseModel):
    cpu_micro_per_core_second: int = Field(description="per normalized CPU-core-second")
    gpu_micro_per_gpu_second: int
    memory_micro_per_gb_second: int
    platform_fee_bps: int = Field(description="basis points of each charge (1000 = 10 %)")
    min_task_charge_micro: int = Field(description="the least one replica is charged")
    source: str = Field(description="settings (never changed here) or admin")
    updated_at: datetime | None
    updated_by: str | None


class PricingIn(BaseModel):
    """Any of the five numbers; the others keep their value."""

    model_config = ConfigDict(extra="forbid")

    cpu_micro_per_core_second: StrictInt | None = None
    gpu_micro_per_gpu_second: StrictInt | None = None
    memory_micro_per_gb_second: StrictInt | None = None
    platform_fee_bps: StrictInt | None = None
    min_task_charge_micro: StrictInt | None = None


def _out(view: PriceView) -> PricingOut:
    return PricingOut(
        **view.prices.as_dict(),
        source=view.source,
        updated_at=view.updated_at,
        updated_by=view.updated_by,
    )


@router.get("", response_model=PricingOut)
def get_pricing(_admin: AdminUser, services: ServicesDep) -> PricingOut:
    """The table new submissions are priced by."""
    return _out(services.pricing.view())


@router.put("", response_model=PricingOut)
def put_pricing(body: PricingIn, admin: AdminUser, services: ServicesDep) -> PricingOut:
    """Change prices for jobs submitted from now on; jobs already submitted keep theirs."""
    changes = {k: v for k, v in body.model_dump().items() if v is not None}
    return _out(services.pricing.update(admin, changes))
