"""kibana/logcollect.ndjson: line by line, nested JSON strings, references, dashboard panels,
Lens layers, and every field used present in a real `ecs` document."""
from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

import elkmodel as m

LINES = [l for l in m.NDJSON.read_text(encoding="utf-8").splitlines()]


def _objects():
    return [json.loads(l) for l in LINES]


def _nested_json_strings(value, path=""):
    if isinstance(value, dict):
        for k, v in value.items():
            p = f"{path}.{k}" if path else k
            if k.endswith("JSON"):
                yield p, v
            else:
                yield from _nested_json_strings(v, p)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _nested_json_strings(v, f"{path}[{i}]")


def test_ndjson_is_what_the_generator_writes():
    proc = subprocess.run([sys.executable, "-c",
                           "import runpy,sys; g=runpy.run_path(sys.argv[1]); sys.stdout.write(g['render']())",
                           str(m.KIBANA_GENERATOR)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == m.NDJSON.read_text(encoding="utf-8"), "run python3 kibana/generate.py"


@pytest.mark.parametrize("n", range(len(LINES)))
def test_each_line_is_a_saved_object(n):
    line = LINES[n]
    assert line.strip(), f"line {n + 1} is empty"
    obj = json.loads(line)
    for key in ("id", "type", "attributes", "references", "coreMigrationVersion", "typeMigrationVersion"):
        assert key in obj, f"line {n + 1} lacks {key}"
    assert isinstance(obj["references"], list)
    for ref in obj["references"]:
        assert set(ref) == {"id", "name", "type"}, ref
    for path, value in _nested_json_strings(obj["attributes"]):
        assert isinstance(value, str), f"{path} must be a JSON string"
        json.loads(value)
    assert obj["attributes"].get("title")


def test_ids_unique_and_references_resolve_in_file():
    objs = _objects()
    keys = [(o["type"], o["id"]) for o in objs]
    assert len(keys) == len(set(keys))
    known = set(keys)
    for o in objs:
        names = [r["name"] for r in o["references"]]
        assert len(names) == len(set(names)), f"{o['id']}: duplicate reference names"
        for r in o["references"]:
            assert (r["type"], r["id"]) in known, f"{o['id']}: reference {r} not in the file"


REQUESTS_DASHBOARD = "logcollect-requests-dashboard"


def test_expected_objects_exist():
    types = [o["type"] for o in _objects()]
    assert types.count("index-pattern") == 1
    assert types.count("search") >= 3
    assert types.count("lens") >= 7
    assert types.count("dashboard") == 2
    titles = {o["attributes"]["title"] for o in _objects() if o["type"] == "dashboard"}
    assert titles == {"logcollect overview", "logcollect requests"}
    view = next(o for o in _objects() if o["type"] == "index-pattern")
    assert view["attributes"]["title"] == "logs-logcollect-*"
    assert view["attributes"]["timeFieldName"] == "@timestamp"


def test_saved_searches_reference_their_data_view():
    for o in _objects():
        if o["type"] != "search":
            continue
        source = json.loads(o["attributes"]["kibanaSavedObjectMeta"]["searchSourceJSON"])
        ref_name = source["indexRefName"]
        refs = [r for r in o["references"] if r["name"] == ref_name]
        assert len(refs) == 1 and refs[0]["type"] == "index-pattern"
        assert source["query"]["language"] == "kuery"


def test_error_search_filters_errors():
    search = next(o for o in _objects() if o["id"] == "logcollect-errors-search")
    source = json.loads(search["attributes"]["kibanaSavedObjectMeta"]["searchSourceJSON"])
    assert _kql_fields(source["query"]["query"]) == {"log.level": "ERROR"}
    assert search["attributes"]["sort"] == [["@timestamp", "desc"]]
    assert search["attributes"]["columns"] == ["service.name", "host.hostname", "message",
                                               "error.type", "error.message"]


def test_lens_layers_and_references():
    for o in _objects():
        if o["type"] != "lens":
            continue
        state = o["attributes"]["state"]
        layers = state["datasourceStates"]["formBased"]["layers"]
        assert layers, o["id"]
        ref_names = {r["name"]: r for r in o["references"]}
        for layer_id, layer in layers.items():
            ref = ref_names.get(f"indexpattern-datasource-layer-{layer_id}")
            assert ref and ref["type"] == "index-pattern", f"{o['id']}: layer {layer_id} has no data view reference"
            assert set(layer["columnOrder"]) == set(layer["columns"]), o["id"]
            for col in layer["columns"].values():
                if col["operationType"] == "terms":
                    assert col["params"]["orderBy"].get("columnId", None) in layer["columns"] \
                        or col["params"]["orderBy"]["type"] != "column"
        vis = state["visualization"]
        vis_layers = vis["layers"] if "layers" in vis else [vis]
        for vl in vis_layers:
            assert vl["layerId"] in layers, f"{o['id']}: visualization layer {vl['layerId']} has no data"
            columns = layers[vl["layerId"]]["columns"]
            used = list(vl.get("accessors", [])) + [vl[k] for k in ("xAccessor", "splitAccessor") if vl.get(k)]
            used += [c["columnId"] for c in vl.get("columns", [])]
            assert used, o["id"]
            for c in used:
                assert c in columns, f"{o['id']}: accessor {c} is not a column"
        assert o["attributes"]["visualizationType"] in {"lnsXY", "lnsMetric", "lnsDatatable", "lnsPie"}


def panel_objects(dashboard_id: str) -> set[str]:
    dash = next(o for o in _objects() if o["id"] == dashboard_id)
    return {r["id"] for r in dash["references"]}


@pytest.mark.parametrize("dashboard_id", ["logcollect-dashboard", REQUESTS_DASHBOARD])
def test_dashboard_panels_match_references(dashboard_id):
    objs = {(o["type"], o["id"]): o for o in _objects()}
    dash = next(o for o in objs.values() if o["id"] == dashboard_id)
    panels = json.loads(dash["attributes"]["panelsJSON"])
    refs = {r["name"]: r for r in dash["references"]}
    used = set()
    cells = set()
    for p in panels:
        index = p["panelIndex"]
        assert p["panelRefName"] == f"panel_{index}"
        name = f"{index}:panel_{index}"
        assert name in refs, f"panel {index}: no reference {name}"
        assert refs[name]["type"] == p["type"]
        assert (p["type"], refs[name]["id"]) in objs
        used.add(name)
        g = p["gridData"]
        assert g["i"] == index and 0 <= g["x"] and g["x"] + g["w"] <= 48 and g["h"] > 0
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in cells, f"panel {index} overlaps another"
                cells.add((x, y))
    assert used == set(refs), f"references no panel uses: {set(refs) - used}"


def test_the_dashboards_hold_every_visualization_and_search_once():
    overview, requests = panel_objects("logcollect-dashboard"), panel_objects(REQUESTS_DASHBOARD)
    everything = {o["id"] for o in _objects() if o["type"] in ("lens", "search")}
    assert overview | requests == everything
    assert not overview & requests


# --- fields --------------------------------------------------------------------------------
def _kql_fields(query: str) -> dict[str, str]:
    """field -> value for the simple `field : value` and `field >= n` (range) KQL clauses used
    here (and/or joined); a range clause's value is the operator and number (`>= 500`)."""
    out = {}
    if not query.strip():
        return out
    for clause in re.split(r"\s+(?:and|or)\s+", query.strip()):
        mm = re.fullmatch(r'([A-Za-z0-9_.@]+)\s*:\s*"?([^"]*)"?', clause.strip())
        if not mm:
            mm = re.fullmatch(r'([A-Za-z0-9_.@]+)\s*((?:>=|<=|>|<)\s*\d+)', clause.strip())
        assert mm, f"unsupported KQL clause {clause!r}"
        out[mm.group(1)] = mm.group(2)
    return out


def _column_queries(col: dict) -> list[str]:
    """The KQL a Lens column itself carries: a filtered metric, a filters bucket, a formula."""
    queries = []
    if col.get("filter"):
        queries.append(col["filter"]["query"])
    if col["operationType"] == "filters":
        queries += [f["input"]["query"] for f in col["params"]["filters"]]
    if col["operationType"] == "formula":
        queries += re.findall(r"kql='([^']*)'", col["params"]["formula"])
    return queries


def used_fields() -> dict[str, set[str]]:
    """Every field each object uses: Lens source fields and queries, search columns, sort and
    query, data view time field."""
    uses: dict[str, set[str]] = {}
    for o in _objects():
        f: set[str] = set()
        a = o["attributes"]
        if o["type"] == "index-pattern":
            f.add(a["timeFieldName"])
        elif o["type"] == "search":
            f.update(a["columns"])
            f.update(s[0] for s in a["sort"])
            f.update(_kql_fields(json.loads(a["kibanaSavedObjectMeta"]["searchSourceJSON"])["query"]["query"]))
        elif o["type"] == "lens":
            for layer in a["state"]["datasourceStates"]["formBased"]["layers"].values():
                for col in layer["columns"].values():
                    if col.get("sourceField") and col["sourceField"] != "___records___":
                        f.add(col["sourceField"])
                    for q in _column_queries(col):
                        f.update(_kql_fields(q))
            f.update(_kql_fields(a["state"]["query"]["query"]))
        elif o["type"] == "dashboard":
            f.update(_kql_fields(json.loads(a["kibanaSavedObjectMeta"]["searchSourceJSON"])["query"]["query"]))
        uses[o["id"]] = f
    return uses


def test_visualizations_use_the_fields_the_issue_asks_for():
    uses = used_fields()
    assert {"@timestamp", "log.level"} <= uses["logcollect-lens-events-by-level"]
    assert "service.name" in uses["logcollect-lens-top-services"]
    assert "host.hostname" in uses["logcollect-lens-top-hosts"]
    assert {"labels.project", "labels.application", "log.level"} <= uses["logcollect-lens-errors-by-identity"]
    assert {"@timestamp", "service.name", "host.hostname", "message", "error.type", "error.message"} \
        <= uses["logcollect-errors-search"]


def test_every_used_field_is_in_a_real_ecs_document(sample):
    """The overview's objects against the crate's sample document (the requests dashboard's
    are checked against the web example's documents below)."""
    ecs = sample["ecs"]
    requests = panel_objects(REQUESTS_DASHBOARD) | {REQUESTS_DASHBOARD}
    missing = {oid: sorted(f for f in fields if not m.has_path(ecs, f))
               for oid, fields in used_fields().items() if oid not in requests}
    missing = {k: v for k, v in missing.items() if v}
    assert not missing, f"fields the ecs encoder does not emit: {missing}"


def test_error_query_value_is_a_level_the_encoder_writes(sample):
    assert sample["ecs"]["log"]["level"] in {"TRACE", "DEBUG", "INFO", "WARN", "ERROR"}
    assert "error" in sample["ecs"], "the sample is an error event"


@pytest.mark.parametrize("fmt", ["ecs", "classic"])
def test_indexed_documents_show_up_on_the_dashboard(sample, logstash, fmt):
    """The dashboard's grouping fields exist in what the real pipeline indexes for either
    encoding (the AMQP properties the crate sets, Logstash's event)."""
    props = {"type": fmt, "app-id": "sample", "message-id": "m-1"}
    [out] = logstash.indexed(json.dumps(sample[fmt]).encode(), props)
    for f in ("@timestamp", "log.level", "service.name", "host.hostname", "labels.project",
              "labels.application", "message"):
        assert m.has_path(out, f), f


# --- the requests dashboard -----------------------------------------------------------------
def _object(oid: str) -> dict:
    return next(o for o in _objects() if o["id"] == oid)


def _query_of(o: dict) -> str:
    a = o["attributes"]
    if o["type"] == "lens":
        return a["state"]["query"]["query"]
    return json.loads(a["kibanaSavedObjectMeta"]["searchSourceJSON"])["query"]["query"]


def test_requests_dashboard_shows_what_the_issue_asks_for():
    uses = used_fields()
    assert {"@timestamp", "http.response.status_code"} <= uses["logcollect-lens-requests-by-status-class"]
    assert {"http.route", "event.duration"} <= uses["logcollect-lens-p95-duration-by-route"]
    assert {"service.name", "http.response.status_code"} <= uses["logcollect-lens-error-rate-by-service"]
    slowest = _object("logcollect-slowest-requests-search")
    assert slowest["attributes"]["sort"] == [["event.duration", "desc"]]
    assert "event.duration" in slowest["attributes"]["columns"]
    by_trace = _object("logcollect-trace-search")
    assert by_trace["attributes"]["sort"] == [["@timestamp", "asc"]]
    assert _kql_fields(_query_of(by_trace)) == {"trace.id": "*"}
    assert {"trace.id", "transaction.id", "span.id", "http.request.id"} <= set(by_trace["attributes"]["columns"])
    p95 = _object("logcollect-lens-p95-duration-by-route")
    cols = p95["attributes"]["state"]["datasourceStates"]["formBased"]["layers"]["routes"]["columns"]
    assert cols["p95"]["operationType"] == "percentile" and cols["p95"]["params"]["percentile"] == 95
    assert cols["p95"]["params"]["format"]["params"]["fromUnit"] == "nanoseconds"


def test_status_classes_cover_every_status_once():
    o = _object("logcollect-lens-requests-by-status-class")
    cols = o["attributes"]["state"]["datasourceStates"]["formBased"]["layers"]["requests"]["columns"]
    filters = cols["class"]["params"]["filters"]

    def matches(kql: str, status: int) -> bool:
        ok = True
        for clause in re.split(r"\s+and\s+", kql):
            field, op, n = re.fullmatch(r"(\S+)\s*(>=|<=|>|<)\s*(\d+)", clause.strip()).groups()
            assert field == "http.response.status_code"
            n = int(n)
            ok &= {">=": status >= n, "<=": status <= n, ">": status > n, "<": status < n}[op]
        return ok

    for status in range(100, 600):
        hits = [f["label"] for f in filters if matches(f["input"]["query"], status)]
        assert hits == [f"{status // 100}xx"], (status, hits)


def test_error_rate_formula_is_consistent():
    o = _object("logcollect-lens-error-rate-by-service")
    cols = o["attributes"]["state"]["datasourceStates"]["formBased"]["layers"]["services"]["columns"]
    formula = cols["rate"]
    assert formula["operationType"] == "formula"
    for ref in formula["references"]:
        assert ref in cols
        for inner in cols[ref].get("references", []):
            assert inner in cols
    math = cols[formula["references"][0]]
    assert math["params"]["tinymathAst"]["name"] == "divide"
    numerator, denominator = (cols[c] for c in math["params"]["tinymathAst"]["args"])
    assert numerator["filter"]["query"] == "http.response.status_code >= 500"
    assert "filter" not in denominator


def test_requests_dashboard_fields_are_in_the_web_examples_documents(web_documents):
    """Every field an object of the requests dashboard uses is in every real document of the
    web example that its query selects (the access events for the requests' objects)."""
    access = [d for d in web_documents if m.has_path(d, "http.response.status_code")]
    assert len(access) == 3, "one access event per request"
    for oid in panel_objects(REQUESTS_DASHBOARD):
        query = _kql_fields(_query_of(_object(oid)))
        selected = [d for d in web_documents if all(m.has_path(d, f) for f in query)]
        assert selected, f"{oid}: its query selects no document"
        for field in used_fields()[oid]:
            lacking = [d["message"] for d in selected if not m.has_path(d, field)]
            assert not lacking, f"{oid}: {field} missing in {lacking}"


def test_web_documents_have_the_ecs_types(web_documents):
    for d in web_documents:
        assert len(d["trace"]["id"]) == 32 and len(d["span"]["id"]) == 16
        if m.has_path(d, "http.response.status_code"):
            assert isinstance(d["http"]["response"]["status_code"], int)
            assert isinstance(d["event"]["duration"], int) and d["event"]["duration"] > 0
            assert d["client"]["ip"] == "127.0.0.1"
    hello = [d for d in web_documents if d["url"]["path"] == "/hello"]
    assert {d["trace"]["id"] for d in hello} == {m.WEB_TRACEPARENT.split("-")[1]}
