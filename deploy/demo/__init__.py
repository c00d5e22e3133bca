"""The whole system on one machine: ``python -m deploy.demo`` (``make demo``).

Real processes talking real HTTP on 127.0.0.1: the Ministry simulator, the
depot on an embedded PostgreSQL, validators reading pseudo-terminals, and a
passenger simulator feeding them real QR codes, cards and keypad entries.
The end-to-end tests (``tests/e2e/``) run the same code, smaller.

* :mod:`deploy.demo.configs`: the configuration files and the boarding policy.
* :mod:`deploy.demo.children`: starting and stopping child processes.
* :mod:`deploy.demo.stack`: the system, started and stopped as a whole.
* :mod:`deploy.demo.proxy`: a TCP proxy that cuts one validator off the depot.
* :mod:`deploy.demo.clients`: small HTTP clients for the simulator, depot and screens.
* :mod:`deploy.demo.world`: the simulator's truth, what each answer should be.
* :mod:`deploy.demo.qr`: QR codes made with segno and read back with zxing-cpp.
* :mod:`deploy.demo.passengers`: riders presenting credentials at the validators.
* :mod:`deploy.demo.scenario`: the run: outages on a timeline, then drain and export.
* :mod:`deploy.demo.audit`: every tap stored once, every answer against the truth.
* :mod:`deploy.demo.table`: the live table.
* :mod:`deploy.demo.summary`: the closing summary.
"""
