"""Analysis: images the store holds, turned into what each output says of them.

A bundle (`bundle`) is loaded and verified; its TFLite models (`models`) run on a runtime and
accelerator (`runtime`) in worker processes (`worker`, `analyser`) that the pool (`pool`) feeds
from the store's queue and writes back to it. The output plug-ins (`outputs/`) turn model
outputs into a record's fields, and `views` renders a record for each consumer (API, index,
MQTT, S3) through them; `swap` changes the running bundle without a restart.
"""
