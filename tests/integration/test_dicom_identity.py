"""A patient's identity through a real daemon: DICOM files carrying a name, an ID, a birth date,
an accession number, an institution (in the dataset, in nested sequences, in private
attributes, in an overlay, in the preamble; one file in Latin-1 with a birth date written the
legacy way) go into the watched folder of an `s3e-edge` process publishing to a real mosquitto
and syncing to an S3 server. Once each record is analysed, published and synced, the daemon is
stopped and every byte it wrote or sent is searched: each file under its data folder (taken
while it ran and after it stopped: SQLite and its WAL, the Tantivy index, derived files,
originals), every term and stored document of the index (its files are compressed), its log
(at debug), every MQTT message, every object in the bucket, and the API's answers. None holds
an identity string, in any of the forms it may take, unless `[dicom] keep_identity` is set:
then the kept originals (local and synced) hold every one of them, which also proves the
search finds what it looks for, and nothing else does."""

from __future__ import annotations

import hashlib
import io
import json
import re
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset
from support import dicom_files as df
from support.common import free_port, wait_until
from support.mqtt_broker import Broker, Collector
from support.processes import INDEXED, db_count, healthy, start, write_config
from support.s3_servers import new_bucket, s3_section

from edge.search.index import SearchIndex

FORMER = {"PatientID": "OLD-PID-55120", "PatientName": "QUIXANO^ALONSO"}
"""What a PACS keeps of the identity it corrected (Original Attributes Sequence)."""
FIRST = {
    **df.IDENTITY,
    "OtherPatientNames": "QUIJANO^EL BUENO",
    "PatientAddress": "Calle de la Argamasilla 7",
    "InstitutionAddress": "Plaza de Dulcinea 1",
    "RequestedProcedureID": "RPID-4410",
}
"""The first file's identity at the top level."""
SECOND = {
    "SpecificCharacterSet": "ISO_IR 100",
    "PatientName": "MUÑOZ^DULCINEA",
    "PatientID": "PID-B-5510-Ñ",
    "PatientBirthDate": "14.09.1938",
    "AccessionNumber": "ACC-77-SECOND",
    "InstitutionName": "Clínica del Campo de Montiel",
}
"""The second file's, in Latin-1, its birth date not a DICOM date (legacy writers)."""
NESTED = ("Nested Institution of Argamasilla", "Operators Guild of Montiel")
BAD_UID = "1.2.826.0.1.3680043.8.498.0999"
"""Not a valid UID (a component with a leading zero), as careless writers make them: pydicom's
check of it, as it is read, quotes it in a warning."""


def first_file() -> bytes:
    former = Dataset()
    former.PatientID, former.PatientName = FORMER["PatientID"], FORMER["PatientName"]
    original = Dataset()
    original.ModifiedAttributesSequence = df.sequence_of(former)
    modifier = Dataset()  # three levels down, inside sequences the profile keeps
    modifier.CodeValue, modifier.CodingSchemeDesignator = "G-A101", "SRT"
    modifier.CodeMeaning, modifier.PatientName = "Left", FIRST["PatientName"]
    anatomy = Dataset()
    anatomy.CodeValue, anatomy.CodingSchemeDesignator = "T-D3000", "SRT"
    anatomy.CodeMeaning, anatomy.InstitutionName = "Chest", NESTED[0]
    anatomy.AnatomicRegionModifierSequence = df.sequence_of(modifier)
    operator = Dataset()
    operator.InstitutionName = NESTED[1]
    reference = Dataset()
    reference.ReferencedSOPClassUID = df.DigitalXRayImageStorageForPresentation
    reference.ReferencedSOPInstanceUID = BAD_UID
    ds = df.image(
        df.chest_phantom(64, bits=12),
        bits_stored=12,
        private=True,
        overlay=True,
        WindowCenter=2048,
        WindowWidth=4096,
        OriginalAttributesSequence=df.sequence_of(original),
        AnatomicRegionSequence=df.sequence_of(anatomy),
        OperatorIdentificationSequence=df.sequence_of(operator),
        ReferencedInstanceSequence=df.sequence_of(reference),
        **{k: v for k, v in FIRST.items() if k not in df.IDENTITY},
    )
    ds.file_meta.SourceApplicationEntityTitle = "ROCINANTE_PACS"
    return df.part10(ds, preamble=f"{FIRST['PatientName']} {FIRST['PatientID']}".encode())


def second_file(burned_in: bool = False) -> bytes:
    """With `burned_in`, its pixels say they carry annotation: taken only when identity is
    kept, and then shown to a browser like any other."""
    data = df.write(df.chest_phantom(64, seed=5, bits=12), bits_stored=12, identity=False)
    ds = dcmread(io.BytesIO(data))
    if burned_in:
        ds.BurnedInAnnotation = "YES"
    for keyword, value in {**SECOND, "StudyDate": df.IDENTITY["StudyDate"]}.items():
        setattr(ds, keyword, value)
    return df.part10(ds)


def forms(value: str) -> set[bytes]:
    """The bytes `value` may be found as: UTF-8, Latin-1 (the second file's character set),
    JSON-escaped, a person name's components as a viewer joins them and one by one, a
    DICOM date written ISO. Searched for case-insensitively."""
    texts = {value, value.replace("^", " "), value.replace("^", ", ", 1)}
    if "^" in value:
        texts |= {p for p in re.split(r"[\^ ]", value) if len(p) >= 5}
    if re.fullmatch(r"\d{8}", value):
        texts.add(f"{value[:4]}-{value[4:6]}-{value[6:]}")
    out = set()
    for t in texts:
        out |= {t.encode(), t.encode("latin-1", "replace"), json.dumps(t)[1:-1].encode()}
    return {b.lower() for b in out}


def identity(*, on_device: bool) -> dict[str, set[bytes]]:
    """Each identity string (the study date too, if `on_device`) and its forms."""
    values = [*FIRST.values(), *SECOND.values(), *FORMER.values(), *NESTED]
    values += [df.PRIVATE_VALUE, df.OVERLAY_LABEL, "ROCINANTE_PACS", *df.UIDS.values()]
    values += [BAD_UID]
    values = [v for v in values if v not in ("ISO_IR 100", df.IDENTITY["StudyDate"])]
    if on_device:
        values.append(df.IDENTITY["StudyDate"])
    return {v: forms(v) for v in values}


def found(data: bytes, secrets: dict[str, set[bytes]]) -> set[str]:
    low = data.lower()
    return {v for v, fs in secrets.items() if any(f in low for f in fs)}


@dataclass
class Run:
    """Everything one daemon wrote or sent, by where it was found."""

    ids: list[str]
    places: dict[str, bytes] = field(default_factory=dict)

    def leaks(
        self, secrets: dict[str, set[bytes]], allowed: Callable[[str], bool] = lambda _: False
    ) -> list[str]:
        """`where: value` for each identity string found where it is not `allowed`."""
        return sorted(
            f"{where}: {v}"
            for where, data in self.places.items()
            if not allowed(where)
            for v in found(data, secrets)
        )

    def originals(self) -> dict[str, bytes]:
        """The kept originals: local, served, synced."""
        return {w: d for w, d in self.places.items() if is_original(w)}


def is_original(where: str) -> bool:
    return bool(re.search(r"^data \w+ originals/|^s3 .*\.dcm$|^api .* dicom$", where))


def in_store(where: str) -> bool:
    """The store's database and the API's answer for one record: what the device keeps."""
    return bool(re.search(r"^data \w+ records\.sqlite3|^api /records/", where))


@pytest.fixture
def broker(tmp_path: Path) -> Any:
    b = Broker(tmp_path / "broker").start()
    yield b
    b.stop()


def due(data: Path) -> int:
    with sqlite3.connect(f"file:{data / 'records.sqlite3'}?mode=ro", uri=True, timeout=5) as c:
        return int(c.execute("SELECT COUNT(*) FROM due").fetchone()[0])


def toml(section: str, values: dict[str, Any]) -> str:
    return f"[{section}]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in values.items())


def run_daemon(tmp: Path, broker: Broker, moto: Any, keep_identity: bool) -> Run:
    """Both files through one daemon, until each is indexed, published and synced; its
    traces gathered while it runs and once it has stopped."""
    files = {"first.dcm": first_file(), "second.dcm": second_file(burned_in=keep_identity)}
    port, bucket = free_port(), new_bucket(moto)
    (tmp / "inbox").mkdir()
    config = write_config(
        tmp,
        port,
        mqtt=toml("mqtt", {"host": "127.0.0.1", "port": broker.port, "include_thumbnail": True}),
        s3=toml("s3", s3_section(moto, bucket)),
        dicom=toml("dicom", {"keep_identity": keep_identity}),
    )
    config.write_text('log_level = "debug"\n' + config.read_text())
    mqtt = Collector(broker, "#")
    proc = start(config, tmp / "log.txt")
    data = tmp / "data"
    run = Run(sorted(hashlib.sha256(b).hexdigest() for b in files.values()))
    try:
        wait_until(lambda: healthy(port), 60, "daemon up")
        for name, body in files.items():
            (tmp / "inbox" / name).write_bytes(body)
        wait_until(lambda: db_count(data, INDEXED) == 2 and due(data) == 0, 60, "2 delivered")
        wait_until(
            lambda: {e["id"] for e in mqtt.payloads("/events")} == set(run.ids), 30, "2 events"
        )
        api = f"http://127.0.0.1:{port}"
        got = httpx.get(f"{api}/search", params={"modality": "dx", "body_part": "chest"})
        assert got.json()["total"] == 2  # indexed, and filtered on its kept attributes
        run.places["api /search"] = got.content
        for rid in run.ids:
            run.places[f"api /records/{rid}"] = httpx.get(f"{api}/records/{rid}").content
            view = httpx.get(f"{api}/images/{rid}")
            assert view.headers["content-type"] == "image/png"
            run.places[f"api /images/{rid}"] = view.content
            dicom = {"Accept": "application/dicom"}
            run.places[f"api /images/{rid} dicom"] = httpx.get(
                f"{api}/images/{rid}", headers=dicom
            ).content
        gather_files(run, data, "running")
    finally:
        proc.terminate()
        rc = proc.wait(30)
        mqtt.close()
    assert rc == 0, (tmp / "log.txt").read_text()[-3000:]
    gather_files(run, data, "stopped")
    run.places["index terms and documents"] = index_dump(data / "index")
    run.places["log"] = (tmp / "log.txt").read_bytes()
    with mqtt.lock:
        for n, (topic, payload, _) in enumerate(mqtt.messages):
            run.places[f"mqtt {n} {topic}"] = topic.encode() + b"\n" + payload
    s3 = moto.client()
    for obj in s3.list_objects_v2(Bucket=bucket).get("Contents", []):
        run.places[f"s3 {obj['Key']}"] = s3.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read()
    return run


def gather_files(run: Run, data: Path, when: str) -> None:
    for p in sorted(data.rglob("*")):
        if p.is_file():
            try:
                run.places[f"data {when} {p.relative_to(data)}"] = p.read_bytes()
            except FileNotFoundError:  # a temp file renamed or a WAL checkpointed meanwhile
                continue


def index_dump(path: Path) -> bytes:
    """Every term of every text field and every stored document, as JSON: Tantivy compresses
    its files, so a byte search of them alone proves little."""
    fields = json.loads((path / "meta.json").read_text())["schema"]
    index = SearchIndex(path, writable=False)
    searcher = index.index.searcher()
    terms = {
        f["name"]: searcher.terms_with_prefix(f["name"], "") for f in fields if f["type"] == "text"
    }
    assert dict(terms["modality"]) == {"DX": 2}  # the dump sees the unstored fields
    hits = searcher.search(index.index.parse_query("*"), 100).hits
    docs = [searcher.doc(address).to_dict() for _, address in hits]
    assert len(docs) == 2
    return json.dumps({"terms": terms, "docs": docs}, default=str).encode()


def test_no_identity_string_is_in_anything_the_daemon_writes_or_sends(
    tmp_path: Path, broker: Broker, moto_server: Any
) -> None:
    run = run_daemon(tmp_path, broker, moto_server, keep_identity=False)
    assert len(run.originals()) == 8  # each file served, synced, and local (running, stopped)
    assert len([w for w in run.places if w.startswith("s3 ")]) == 6  # and sidecar, thumbnail
    assert all(rid[:12].encode() in run.places["log"] for rid in run.ids)  # the daemon's log
    assert run.leaks(identity(on_device=False)) == []
    study = {v: f for v, f in identity(on_device=True).items() if v == df.IDENTITY["StudyDate"]}
    assert run.leaks(study, allowed=in_store) == []
    record = json.loads(run.places[f"api /records/{hashlib.sha256(first_file()).hexdigest()}"])
    assert record["dicom"]["study_date"] == df.IDENTITY["StudyDate"]  # kept, on the device
    sidecars = [json.loads(d) for w, d in run.places.items() if re.search(r"^s3 .*\.json$", w)]
    events = [json.loads(d.split(b"\n", 1)[1]) for w, d in run.places.items() if "/events" in w]
    assert len(sidecars) == 2 and len(events) >= 2
    public = {
        "modality": "DX",
        "body_part": "CHEST",
        "view_position": "PA",
        "manufacturer": "S3E Phantoms",
    }
    assert all(doc["dicom"] == public for doc in sidecars + events)  # no study date
    for where, data in run.originals().items():
        ds = dcmread(io.BytesIO(data))
        assert ds.PatientIdentityRemoved == "YES", where
        assert ds.pixel_array.shape == (64, 64), where
        assert not [e for e in ds if e.tag.is_private or 0x6000 <= e.tag.group <= 0x60FF]


def test_kept_identity_is_in_the_kept_originals_and_nowhere_else(
    tmp_path: Path, broker: Broker, moto_server: Any
) -> None:
    run = run_daemon(tmp_path, broker, moto_server, keep_identity=True)
    secrets = identity(on_device=True)
    synced = {w: d for w, d in run.originals().items() if w.startswith("s3 ")}
    assert sorted(synced.values()) == sorted(
        [first_file(), second_file(burned_in=True)]
    )  # as received
    everywhere = set().union(*(found(d, secrets) for d in synced.values()))
    assert everywhere == set(secrets)  # so the search finds each string as a file holds it
    assert run.leaks(secrets, allowed=lambda w: is_original(w) or in_store(w)) == []
