"""The small family of exceptions the project raises on purpose."""


class ParkError(Exception):
    """Base class: anything the operator can act on from its message alone."""


class ConfigError(ParkError):
    """A configuration or scenario file is wrong; the message names the field and the reason."""


class DeviceError(ParkError):
    """A device could not be reached or answered something unusable."""


class BrokerUnavailable(ParkError):
    """No MQTT broker could be used or started."""
