"""Dependencies of the payout routes: the shared ones (shared.deps: the runtime, a connection,
the clock) with payout's settings, and waking the relay and the transfer follower."""
from __future__ import annotations

from services.payout.settings import PayoutSettings
from shared.deps import ConnDep, RuntimeDep, SnapshotConnDep, get_runtime, settings_dependency, utcnow  # noqa: F401
from shared.service import Runtime

SettingsDep = settings_dependency(PayoutSettings)


def kick(rt: Runtime) -> None:
    """After a commit that wrote events or approved a withdrawal: publish and follow now."""
    rt.relay.kick()
    follower = rt.extras.get("follower")
    if follower is not None:
        follower.kick()
