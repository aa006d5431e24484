# Publishing serialized bytes through rcl itself, without the GIL and without rclpy's extra copy.
#
# rclpy's Publisher.publish(bytes) goes through the pybind11 method publish_raw(std::string): the
# bytes are first copied into a std::string (4.6 MB for the PointCloud2 of a 190k-voxel scene),
# then rcl_publish_serialized_message hands them to the middleware, which copies them again into
# its payload and the shared-memory segment. All of it runs while the calling thread holds the GIL,
# so sgn_node's three outputs (~12 MB a frame) were published one after another, and no encoder
# thread could run meanwhile.
#
# `SerializedPublisher` calls the same rcl function through ctypes on the publisher's own rcl
# handle (rclpy's pybind11 entities expose their rcl address as `pointer`):
# the rcl_serialized_message_t points at the `bytes` object's buffer (no copy), and ctypes releases
# the GIL for the call, so outputs published from different threads overlap and the encoders keep
# running. The middleware receives exactly the bytes rclpy would pass (test_rcl_publish checks
# them at the subscriber), under the publisher handle's use guard like rclpy's own publish.
#
# Where librcl cannot be found in the process, or the rclpy in use has no `pointer`, publishing
# falls back to Publisher.publish (same bytes on the wire) and `native` says so.
"""GIL-free, copy-free publishing of serialized messages via rcl_publish_serialized_message."""

from __future__ import annotations

import ctypes
from typing import Any

__all__ = ["SerializedPublisher", "publish_at", "rcl_available"]


class _Allocator(ctypes.Structure):
    """rcutils_allocator_t: four function pointers and a state pointer (unused by publishing)."""

    _fields_ = [("allocate", ctypes.c_void_p), ("deallocate", ctypes.c_void_p), ("reallocate", ctypes.c_void_p),
                ("zero_allocate", ctypes.c_void_p), ("state", ctypes.c_void_p)]


class _SerializedMessage(ctypes.Structure):
    """rcl_serialized_message_t (= rcutils_uint8_array_t), unchanged since ROS 2 Dashing."""

    _fields_ = [("buffer", ctypes.c_void_p), ("buffer_length", ctypes.c_size_t),
                ("buffer_capacity", ctypes.c_size_t), ("allocator", _Allocator)]


class _ErrorString(ctypes.Structure):
    """rcutils_error_string_t: RCUTILS_ERROR_MESSAGE_MAX_LENGTH (1024) characters."""

    _fields_ = [("str", ctypes.c_char * 1024)]


class _Rcl:
    """The three C functions, looked up once in the librcl / librcutils rclpy already loaded."""

    def __init__(self) -> None:
        # rclpy's extension lists librcl.so / librcutils.so as dependencies, so these names resolve
        # to the copies already in the process (glibc matches loaded objects by their needed name).
        import rclpy._rclpy_pybind11  # noqa: F401  (loads librcl before we look for it)

        rcl, rcutils = ctypes.CDLL("librcl.so"), ctypes.CDLL("librcutils.so")
        self.publish = rcl.rcl_publish_serialized_message  # CDLL: the GIL is released for the call
        self.publish.argtypes = [ctypes.c_void_p, ctypes.POINTER(_SerializedMessage), ctypes.c_void_p]
        self.publish.restype = ctypes.c_int
        self.error = rcutils.rcutils_get_error_string
        self.error.argtypes, self.error.restype = [], _ErrorString
        self.reset = rcutils.rcutils_reset_error
        self.reset.argtypes, self.reset.restype = [], None


_RCL: _Rcl | None = None
_RCL_ERROR: str | None = None


def _rcl() -> _Rcl | None:
    """The rcl functions, or None (reason in `rcl_available()`) when they cannot be loaded."""
    global _RCL, _RCL_ERROR
    if _RCL is None and _RCL_ERROR is None:
        try:
            _RCL = _Rcl()
        except (OSError, AttributeError, ImportError) as e:
            _RCL_ERROR = f"rcl_publish_serialized_message unavailable ({e})"
    return _RCL


def rcl_available() -> tuple[bool, str]:
    """(True, "") when rcl's publish function can be called directly, else (False, why)."""
    return (_rcl() is not None), (_RCL_ERROR or "")


def publish_at(publisher_address: int, data: bytes, topic: str = "?") -> None:
    """rcl_publish_serialized_message on the rcl_publisher_t at `publisher_address` with `data`
    (the bytes object's own buffer, the GIL released). The caller keeps the publisher alive for the
    call (see `SerializedPublisher.publish`); rcl refuses a publisher that is not initialised or
    whose context was shut down, with its reason.

    Raises:
        RuntimeError: librcl is not available, or rcl refused (its error string says why).
    """
    rcl = _rcl()
    if rcl is None:
        raise RuntimeError(f"{topic}: {_RCL_ERROR}")
    msg = _SerializedMessage()
    msg.buffer = ctypes.cast(ctypes.c_char_p(data), ctypes.c_void_p)
    msg.buffer_length = msg.buffer_capacity = len(data)
    ret = rcl.publish(publisher_address, ctypes.byref(msg), None)
    if ret != 0:
        why = rcl.error().str.decode(errors="replace")
        rcl.reset()  # the error state is per thread; leave it clean as rclpy does
        raise RuntimeError(f"{topic}: rcl_publish_serialized_message failed (rcl_ret_t {ret}): {why}")


class SerializedPublisher:
    """Publishes CDR `bytes` on an rclpy publisher: directly through rcl (GIL released, no extra
    copy) where possible, else through `Publisher.publish` (same bytes).

    Args:
        publisher: an rclpy `Publisher`; its message type must be the one the bytes serialize.
        native: None = direct when available; True = direct or ValueError; False = rclpy's publish.
    """

    def __init__(self, publisher: Any, native: bool | None = None) -> None:
        self.publisher = publisher
        self.topic = str(publisher.topic_name)
        rcl = _rcl() if native is not False else None
        handle = getattr(publisher, "handle", None)
        has_pointer = handle is not None and hasattr(type(handle), "pointer")
        if native and (rcl is None or not has_pointer):
            why = _RCL_ERROR if rcl is None else "this rclpy's publisher handle has no 'pointer'"
            raise ValueError(f"{self.topic}: native publishing requested, but {why}")
        self._rcl = rcl if has_pointer else None

    @property
    def native(self) -> bool:
        """Whether publish() goes to rcl directly (False: through rclpy's publish_raw)."""
        return self._rcl is not None

    def publish(self, data: bytes) -> None:
        """Publish one serialized message (the encapsulation header first, as
        rclpy.serialization.serialize_message returns it).

        Raises:
            TypeError: data is not bytes.
            RuntimeError: rcl refused (the error string names why), or the publisher was destroyed
                (rclpy's InvalidHandle).
        """
        if not isinstance(data, bytes):
            raise TypeError(f"{self.topic}: expected serialized bytes, got {type(data).__name__}")
        if self._rcl is None:
            self.publisher.publish(data)
            return
        with self.publisher.handle:  # rclpy's use guard: the publisher is not destroyed meanwhile
            publish_at(self.publisher.handle.pointer, data, self.topic)
