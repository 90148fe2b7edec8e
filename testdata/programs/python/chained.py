# Run by tests/python.rs: a cause chain (raise ... from) and a context chain
# (exception while handling). Line numbers are asserted there.
class ConfigError(Exception):
    pass


def load(cfg):
    return cfg["port"]


def start(cfg):
    try:
        load(cfg)
    except KeyError as e:
        raise ConfigError("port missing") from e


def main():
    try:
        start({})
    except ConfigError:
        print("cleaning up", flush=True)
        1 / 0


main()
