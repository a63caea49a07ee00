"""Dependencies as Annotated aliases (full-stack-fastapi-template style): routes declare what they need,
tests can swap it with `app.dependency_overrides`."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from service.dataplane import DataPlane
from service.settings import Settings


def get_dataplane(request: Request) -> DataPlane:
    """The app's data plane (created by the lifespan in `create_app`)."""
    return request.app.state.dataplane


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


DataPlaneDep = Annotated[DataPlane, Depends(get_dataplane)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
