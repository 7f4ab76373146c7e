"""Who may do what in the console. Every role sees every page; changing something needs the
role that owns it. A viewer changes nothing."""
from __future__ import annotations

from typing import Literal

Role = Literal["operator", "finance", "plan_admin", "auditor", "viewer"]
ROLES: tuple[Role, ...] = ("operator", "finance", "plan_admin", "auditor", "viewer")

ROLE_NAMES: dict[str, str] = {
    "operator": "运营", "finance": "财务", "plan_admin": "方案管理员", "auditor": "审计", "viewer": "只读",
}

#: action -> the roles allowed to take it
PERMISSIONS: dict[str, frozenset[str]] = {
    "plan.publish": frozenset({"plan_admin"}),
    "plan.check": frozenset({"plan_admin"}),
    "application.decide": frozenset({"operator"}),
    "promoter.status": frozenset({"operator"}),
    "customer.rebind": frozenset({"operator"}),
    "withdrawal.decide": frozenset({"finance"}),
    "withdrawals.export": frozenset({"finance", "auditor"}),
    "audit.run": frozenset({"auditor", "finance"}),
    "compliance.report": frozenset({"auditor"}),
}


class PermissionDenied(Exception):
    def __init__(self, role: str, action: str) -> None:
        super().__init__(f"角色「{ROLE_NAMES.get(role, role)}」无权执行 {action}")
        self.role, self.action = role, action


def can(role: str, action: str) -> bool:
    return role in PERMISSIONS.get(action, frozenset())


def require(role: str, action: str) -> None:
    if not can(role, action):
        raise PermissionDenied(role, action)


def is_role(value: str) -> bool:
    return value in ROLES
