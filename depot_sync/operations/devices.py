"""Enrolled validators: provisioning, revocation, and their request-signing secrets.

A device's secret is 32 random bytes, made here, shown once (in the
validator's configuration) and stored only AES-GCM encrypted.
"""

from __future__ import annotations

import enum
import re
import secrets
from dataclasses import dataclass
from typing import Final

import asyncpg
import structlog

from depot_sync.crypto import FieldCipher, device_context
from depot_sync.db import Conn, Queryable

log = structlog.get_logger("hesgate.depot.devices")

SECRET_SIZE: Final = 32
_DEVICE_ID: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


class DeviceStatus(enum.StrEnum):
    """Whether a device may talk to the depot."""

    ACTIVE = "active"
    REVOKED = "revoked"


class DeviceError(Exception):
    """A device operation cannot be done; the message says why."""


class InvalidDeviceId(DeviceError):
    """The id is not 1-64 letters, digits, ``.``, ``_`` or ``-`` starting with a letter or digit."""


class DeviceExists(DeviceError):
    """A device with this id is already enrolled."""


class UnknownDevice(DeviceError):
    """No device has this id."""


@dataclass(frozen=True, slots=True)
class DeviceSecret:
    """A device's decrypted secret and its status."""

    device_id: str
    status: DeviceStatus
    secret: bytes


def check_device_id(device_id: str) -> str:
    """Return ``device_id`` if it is a valid id, else raise :class:`InvalidDeviceId`."""
    if not _DEVICE_ID.fullmatch(device_id):
        raise InvalidDeviceId(
            f"{device_id!r} is not a device id: 1 to 64 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return device_id


async def provision_device(
    conn: Conn,
    cipher: FieldCipher,
    device_id: str,
    *,
    vehicle: str | None = None,
    rotate: bool = False,
) -> bytes:
    """Enrol ``device_id`` (or with ``rotate``, give it a new secret) and return the secret.

    Rotating also re-activates a revoked device.
    """
    check_device_id(device_id)
    secret = secrets.token_bytes(SECRET_SIZE)
    sealed = cipher.seal(secret, context=device_context(device_id))
    async with conn.transaction():
        if rotate:
            status = await conn.execute(
                "UPDATE devices SET secret_enc = $2, status = 'active', revoked_at = NULL, "
                "vehicle = coalesce($3, vehicle) WHERE id = $1",
                device_id,
                sealed,
                vehicle,
            )
            if status == "UPDATE 0":
                raise UnknownDevice(f"no device {device_id!r} to rotate: provision it first")
        else:
            try:
                await conn.execute(
                    "INSERT INTO devices (id, secret_enc, vehicle) VALUES ($1, $2, $3)",
                    device_id,
                    sealed,
                    vehicle,
                )
            except asyncpg.UniqueViolationError as err:
                raise DeviceExists(
                    f"device {device_id!r} is already enrolled: use --rotate for a new secret"
                ) from err
        await conn.execute(
            "INSERT INTO device_sync (device_id) VALUES ($1) ON CONFLICT DO NOTHING", device_id
        )
    log.info("device provisioned", device=device_id, rotated=rotate)
    return secret


async def revoke_device(conn: Conn, device_id: str) -> bool:
    """Revoke ``device_id``; False if it was already revoked. Its taps stay."""
    row = await conn.fetchrow(
        "UPDATE devices d SET status = 'revoked', revoked_at = coalesce(d.revoked_at, now()) "
        "FROM devices old WHERE d.id = $1 AND old.id = d.id RETURNING old.status",
        device_id,
    )
    if row is None:
        raise UnknownDevice(f"no device {device_id!r}")
    changed = bool(row["status"] == DeviceStatus.ACTIVE)
    log.info("device revoked", device=device_id, changed=changed)
    return changed


async def load_secret(conn: Queryable, cipher: FieldCipher, device_id: str) -> DeviceSecret | None:
    """The device's secret and status, or ``None`` if no such device."""
    row = await conn.fetchrow("SELECT status, secret_enc FROM devices WHERE id = $1", device_id)
    if row is None:
        return None
    secret = cipher.open(row["secret_enc"], context=device_context(device_id))
    return DeviceSecret(device_id, DeviceStatus(row["status"]), secret)


def validator_config(
    *,
    device_id: str,
    secret: bytes,
    list_key: bytes,
    depot_url: str,
    list_key_id: str,
    list_public_pem: str,
) -> str:
    """The ``[device]`` and ``[depot]`` sections of the validator's configuration (TOML)."""
    pem = list_public_pem.strip()
    return (
        "# Made by hes-depot provision-device. Holds this validator's secret: keep it private.\n"
        "[device]\n"
        f'id = "{device_id}"\n'
        f'secret = "{secret.hex()}"\n'
        f'list_key = "{list_key.hex()}"\n'
        "\n"
        "[depot]\n"
        f'url = "{depot_url}"\n'
        f'list_key_id = "{list_key_id}"\n'
        f'list_public_key = """\n{pem}\n"""\n'
    )
