from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Empty(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class DeviceUsageList(_message.Message):
    __slots__ = ("devices",)
    DEVICES_FIELD_NUMBER: _ClassVar[int]
    devices: _containers.RepeatedCompositeFieldContainer[DeviceUsageEntry]
    def __init__(self, devices: _Optional[_Iterable[_Union[DeviceUsageEntry, _Mapping]]] = ...) -> None: ...

class DeviceUsageEntry(_message.Message):
    __slots__ = ("id", "model", "gpu_percent", "memory_used_bytes", "memory_total_bytes")
    ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    GPU_PERCENT_FIELD_NUMBER: _ClassVar[int]
    MEMORY_USED_BYTES_FIELD_NUMBER: _ClassVar[int]
    MEMORY_TOTAL_BYTES_FIELD_NUMBER: _ClassVar[int]
    id: str
    model: str
    gpu_percent: int
    memory_used_bytes: int
    memory_total_bytes: int
    def __init__(self, id: _Optional[str] = ..., model: _Optional[str] = ..., gpu_percent: _Optional[int] = ..., memory_used_bytes: _Optional[int] = ..., memory_total_bytes: _Optional[int] = ...) -> None: ...
