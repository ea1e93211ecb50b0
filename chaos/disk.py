"""Loop-mounted ext4 images whose power can be cut: ``FS_IOC_SHUTDOWN`` with ``NOLOGFLUSH`` drops everything
that was not fsynced, exactly as a power loss would (the page cache survives a kill -9; it does not survive this).
"""

from __future__ import annotations

import fcntl
import os
import shutil
import struct
import subprocess
from dataclasses import dataclass
from pathlib import Path

from chaos.cluster import wait_until

FS_IOC_SHUTDOWN = 0x8004587D  # _IOR('X', 125, __u32)
SHUTDOWN_NOLOGFLUSH = 2
#: No periodic journal commit during a test: only an fsync makes data durable (the strictest case).
MOUNT_OPTIONS = "commit=300"


def unavailable_reason() -> str | None:
    """Why loop-mounted power-cut tests cannot run here, or None when they can."""
    if os.geteuid() != 0:
        return "power-loss tests need root (loop devices, mount, FS_IOC_SHUTDOWN)"
    for tool in ("mkfs.ext4", "mount", "umount", "losetup"):
        if shutil.which(tool) is None:
            return f"power-loss tests need {tool} on PATH"
    if not os.path.exists("/dev/loop-control"):
        return "power-loss tests need loop devices (/dev/loop-control is missing)"
    return None


@dataclass
class LoopDisk:
    image: Path
    mountpoint: Path
    size_mb: int = 384

    def create(self) -> None:
        with open(self.image, "wb") as f:
            f.truncate(self.size_mb * 1024 * 1024)
        subprocess.run(["mkfs.ext4", "-q", "-F", str(self.image)], check=True)
        self.mountpoint.mkdir(parents=True, exist_ok=True)
        self.mount()

    def mount(self) -> None:
        subprocess.run(["mount", "-o", f"loop,{MOUNT_OPTIONS}", str(self.image), str(self.mountpoint)], check=True)

    @property
    def mounted(self) -> bool:
        return os.path.ismount(self.mountpoint)

    def open_for_shutdown(self) -> int:
        return os.open(self.mountpoint, os.O_RDONLY)

    @staticmethod
    def cut_power(fd: int) -> None:
        """Shuts the filesystem down without flushing its journal: unsynced writes are gone."""
        try:
            fcntl.ioctl(fd, FS_IOC_SHUTDOWN, struct.pack("I", SHUTDOWN_NOLOGFLUSH))
        finally:
            os.close(fd)

    def unmount(self) -> None:
        if not self.mounted:
            return

        def done() -> bool:
            return subprocess.run(["umount", str(self.mountpoint)], capture_output=True, check=False).returncode == 0

        wait_until(f"umount {self.mountpoint}", done, timeout=30, interval=0.2)

    def destroy(self) -> None:
        if self.mounted:
            subprocess.run(["umount", "-l", str(self.mountpoint)], capture_output=True, check=False)
        self.image.unlink(missing_ok=True)
