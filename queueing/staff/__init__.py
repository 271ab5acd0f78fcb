"""The staff side of queueing: the war room's page (``views``, ``urls`` under ``/staff/``) and its live
figures over a WebSocket (``consumers``, ``routing`` under ``/ws/staff/``). The figures come from
``queueing/services/warroom.py``."""
