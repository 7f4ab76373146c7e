"""Dependencies of the engagement routes: the shared ones (shared.deps: the runtime, a
connection, the clock) with engagement's settings, and the one rule of access: a promoter reads
only their own data (operators anyone's)."""
from __future__ import annotations

from services.engagement.domain.errors import ForbiddenError
from services.engagement.settings import EngagementSettings
from shared.deps import ConnDep, RuntimeDep, get_runtime, settings_dependency, utcnow  # noqa: F401
from shared.identity import Identity

SettingsDep = settings_dependency(EngagementSettings)


def may_read(identity: Identity, promoter_id: str) -> None:
    """A promoter reads their own data; an operator anyone's."""
    if identity.user_id != promoter_id and not identity.is_staff:
        raise ForbiddenError("a promoter reads only their own data")
