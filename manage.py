#!/usr/bin/env python
import os
import sys

# Servers run their own loop and report their own errors; everything else is an operator command, where a
# server that can't be reached is one clear line, not a traceback.
SERVERS = {"runserver", "daphne", "runworker"}


def main():
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "wartiket.settings")
    from wartiket import instance

    # A `make run` in another terminal: its DATABASE_URL / REDIS_URL / PORT, unless the environment
    # names servers itself (docs/setup.md).
    instance.load()
    from django.core.management import execute_from_command_line

    if len(sys.argv) > 1 and sys.argv[1] in SERVERS:
        execute_from_command_line(sys.argv)
        return
    try:
        execute_from_command_line(sys.argv)
    except Exception as exc:
        message = instance.unreachable_message(exc)
        if message is None:
            raise
        sys.stderr.write(f"manage.py {sys.argv[1]}: {message}\n")
        sys.exit(1)


if __name__ == "__main__":
    main()
