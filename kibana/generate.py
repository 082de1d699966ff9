#!/usr/bin/env python3
"""Writes kibana/logcollect.ndjson: the Kibana saved objects of the logcollect stack.

Edit this file, not the NDJSON (whose nested JSON strings are painful to edit by hand), then run
    python3 kibana/generate.py
tests/elk checks that the NDJSON is exactly what this script writes.

Objects: a data view on logs-logcollect-*; the "logcollect overview" dashboard (a saved search
of errors, also its "latest errors" table, and four Lens visualizations); the "logcollect
requests" dashboard over the access events of the crate's HTTP layer (requests over time by
status class, p95 duration by route, error rate by service, the slowest requests) and the saved
search "events of a trace".
Only fields the crate's `ecs` encoder emits are used (docs/formats.md); tests/elk checks the
overview's against a real document and the requests dashboard's against real documents of the
`web` example.
"""
import json
import pathlib

OUT = pathlib.Path(__file__).with_name("logcollect.ndjson")

CORE_MIGRATION = "8.8.0"
DATA_VIEW_ID = "logcollect-data-view"
SEARCH_ID = "logcollect-errors-search"
ERROR_QUERY = {"query": 'log.level : "ERROR"', "language": "kuery"}
NO_QUERY = {"query": "", "language": "kuery"}
# The access events of the HTTP layer: the only documents with a status code.
REQUESTS_QUERY = {"query": "http.response.status_code : *", "language": "kuery"}
TRACE_QUERY = {"query": "trace.id : *", "language": "kuery"}
SERVER_ERROR = "http.response.status_code >= 500"
STATUS_CLASSES = [
    ("1xx", "http.response.status_code < 200"),
    ("2xx", "http.response.status_code >= 200 and http.response.status_code < 300"),
    ("3xx", "http.response.status_code >= 300 and http.response.status_code < 400"),
    ("4xx", "http.response.status_code >= 400 and http.response.status_code < 500"),
    ("5xx", SERVER_ERROR),
]
REQUESTS_DASHBOARD_ID = "logcollect-requests-dashboard"


def count_column():
    return {
        "label": "Events",
        "customLabel": True,
        "dataType": "number",
        "operationType": "count",
        "isBucketed": False,
        "scale": "ratio",
        "sourceField": "___records___",
        "params": {"emptyAsNull": True},
    }


def terms_column(field, size, order_by, label=None):
    col = {
        "label": label or f"Top {size} values of {field}",
        "dataType": "string",
        "operationType": "terms",
        "isBucketed": True,
        "scale": "ordinal",
        "sourceField": field,
        "params": {
            "size": size,
            "orderBy": {"type": "column", "columnId": order_by},
            "orderDirection": "desc",
            "otherBucket": True,
            "missingBucket": False,
            "parentFormat": {"id": "terms"},
            "include": [],
            "exclude": [],
            "includeIsRegex": False,
            "excludeIsRegex": False,
        },
    }
    if label:
        col["customLabel"] = True
    return col


def date_histogram_column():
    return {
        "label": "@timestamp",
        "dataType": "date",
        "operationType": "date_histogram",
        "isBucketed": True,
        "scale": "interval",
        "sourceField": "@timestamp",
        "params": {"interval": "auto", "includeEmptyRows": True, "dropPartials": False},
    }


def count_where(label, kql):
    col = count_column()
    col["label"] = label
    col["filter"] = {"query": kql, "language": "kuery"}
    return col


def filters_column(label, filters):
    return {
        "label": label,
        "customLabel": True,
        "dataType": "string",
        "operationType": "filters",
        "isBucketed": True,
        "scale": "ordinal",
        "params": {
            "filters": [{"label": name, "input": {"query": kql, "language": "kuery"}}
                        for name, kql in filters]
        },
    }


def percentile_column(field, percentile, label):
    return {
        "label": label,
        "customLabel": True,
        "dataType": "number",
        "operationType": "percentile",
        "isBucketed": False,
        "scale": "ratio",
        "sourceField": field,
        "params": {
            "percentile": percentile,
            # event.duration is in nanoseconds (ECS); shown in milliseconds.
            "format": {"id": "duration",
                       "params": {"decimals": 1, "fromUnit": "nanoseconds", "toUnit": "asMilliseconds"}},
        },
    }


def ratio_formula(column_id, label, numerator_kql):
    """A Lens formula `count(kql='…') / count()` with the hidden columns Lens keeps for it:
    <id>X0 (filtered count), <id>X1 (count), <id>X2 (math: X0 / X1)."""
    text = f"count(kql='{numerator_kql}') / count()"
    x0, x1, x2 = (f"{column_id}X{i}" for i in range(3))
    part = f"Part of {label}"
    hidden = {
        x0: {**count_where(part, numerator_kql), "customLabel": True,
             "params": {"emptyAsNull": False}},
        x1: {**count_column(), "label": part, "params": {"emptyAsNull": False}},
        x2: {
            "label": part,
            "customLabel": True,
            "dataType": "number",
            "operationType": "math",
            "isBucketed": False,
            "scale": "ratio",
            "params": {"tinymathAst": {"type": "function", "name": "divide", "args": [x0, x1],
                                       "location": {"min": 0, "max": len(text)}, "text": text}},
            "references": [x0, x1],
        },
    }
    formula = {
        "label": label,
        "customLabel": True,
        "dataType": "number",
        "operationType": "formula",
        "isBucketed": False,
        "scale": "ratio",
        "params": {"formula": text, "isFormulaBroken": False,
                   "format": {"id": "percent", "params": {"decimals": 1}}},
        "references": [x2],
    }
    return {column_id: formula, **hidden}


def saved_search(obj_id, title, description, columns, sort, query):
    return {
        "id": obj_id,
        "type": "search",
        "attributes": {
            "title": title,
            "description": description,
            "columns": columns,
            "sort": sort,
            "grid": {},
            "hideChart": False,
            "isTextBasedQuery": False,
            "kibanaSavedObjectMeta": {
                "searchSourceJSON": json.dumps(
                    {
                        "query": query,
                        "filter": [],
                        "indexRefName": "kibanaSavedObjectMeta.searchSourceJSON.index",
                    }
                )
            },
        },
        "references": [
            {
                "type": "index-pattern",
                "id": DATA_VIEW_ID,
                "name": "kibanaSavedObjectMeta.searchSourceJSON.index",
            }
        ],
        "coreMigrationVersion": CORE_MIGRATION,
        "typeMigrationVersion": "8.0.0",
        "managed": False,
    }


def dashboard(obj_id, title, description, layout, titles):
    """layout: (panel object, type, x, y, w, h); titles: object id -> panel title."""
    panels, references = [], []
    for i, (obj, kind, x, y, w, h) in enumerate(layout, start=1):
        panel_index = f"p{i}"
        panel = {
            "type": kind,
            "panelIndex": panel_index,
            "gridData": {"x": x, "y": y, "w": w, "h": h, "i": panel_index},
            "embeddableConfig": {"enhancements": {}},
            "panelRefName": f"panel_{panel_index}",
        }
        if obj["id"] in titles:
            panel["embeddableConfig"]["title"] = titles[obj["id"]]
        panels.append(panel)
        references.append({"type": kind, "id": obj["id"], "name": f"{panel_index}:panel_{panel_index}"})
    return {
        "id": obj_id,
        "type": "dashboard",
        "attributes": {
            "title": title,
            "description": description,
            "panelsJSON": json.dumps(panels),
            "optionsJSON": json.dumps(
                {"useMargins": True, "syncColors": False, "syncCursor": True,
                 "syncTooltips": False, "hidePanelTitles": False}
            ),
            "version": 1,
            "timeRestore": True,
            "timeFrom": "now-24h",
            "timeTo": "now",
            "refreshInterval": {"pause": False, "value": 60000},
            "kibanaSavedObjectMeta": {"searchSourceJSON": json.dumps({"query": NO_QUERY, "filter": []})},
        },
        "references": references,
        "coreMigrationVersion": CORE_MIGRATION,
        "typeMigrationVersion": "8.9.0",
        "managed": False,
    }


def requests_objects():
    """The "logcollect requests" dashboard and what it shows."""
    by_status = lens(
        "logcollect-lens-requests-by-status-class",
        "logcollect: requests over time by status class",
        "Access events of the HTTP layer per interval, stacked by status class (1xx … 5xx).",
        "lnsXY",
        "requests",
        {
            "class": filters_column("Status class", STATUS_CLASSES),
            "ts": date_histogram_column(),
            "count": {**count_column(), "label": "Requests"},
        },
        ["class", "ts", "count"],
        xy("requests", "bar_stacked", "ts", ["count"], split="class"),
        query=REQUESTS_QUERY,
    )
    p95_by_route = lens(
        "logcollect-lens-p95-duration-by-route",
        "logcollect: p95 duration by route",
        "95th percentile of event.duration (shown in ms) per matched route (http.route).",
        "lnsXY",
        "routes",
        {
            "route": terms_column("http.route", 20, "p95", "http.route"),
            "p95": percentile_column("event.duration", 95, "p95 duration"),
        },
        ["route", "p95"],
        xy("routes", "bar_horizontal", "route", ["p95"]),
        query=REQUESTS_QUERY,
    )
    error_rate = lens(
        "logcollect-lens-error-rate-by-service",
        "logcollect: error rate by service",
        "Requests, 5xx responses and their share per service (service.name).",
        "lnsDatatable",
        "services",
        {
            "service": terms_column("service.name", 20, "requests", "service.name"),
            "requests": {**count_column(), "label": "Requests"},
            "errors": count_where("5xx responses", SERVER_ERROR),
            **ratio_formula("rate", "Error rate", SERVER_ERROR),
        },
        ["service", "requests", "errors", "rate", "rateX0", "rateX1", "rateX2"],
        {
            "layerId": "services",
            "layerType": "data",
            "columns": [
                {"columnId": "service"},
                {"columnId": "requests"},
                {"columnId": "errors"},
                {"columnId": "rate"},
            ],
            "sorting": {"columnId": "rate", "direction": "desc"},
        },
        query=REQUESTS_QUERY,
    )
    slowest = saved_search(
        "logcollect-slowest-requests-search",
        "logcollect: slowest requests",
        "Access events of the HTTP layer, slowest first (event.duration is in nanoseconds).",
        ["service.name", "http.request.method", "http.route", "url.path",
         "http.response.status_code", "event.duration", "trace.id"],
        [["event.duration", "desc"]],
        REQUESTS_QUERY,
    )
    by_trace = saved_search(
        "logcollect-trace-search",
        "logcollect: events of a trace",
        "Every event of one trace, oldest first, across services and the jobs they queued: "
        "replace * with a trace id (trace.id : \"4bf92f35…\").",
        ["trace.id", "service.name", "log.level", "message", "http.request.id", "transaction.id",
         "span.id"],
        [["@timestamp", "asc"]],
        TRACE_QUERY,
    )
    layout = [
        (by_status, "lens", 0, 0, 48, 14),
        (p95_by_route, "lens", 0, 14, 24, 14),
        (error_rate, "lens", 24, 14, 24, 14),
        (slowest, "search", 0, 28, 48, 16),
        (by_trace, "search", 0, 44, 48, 16),
    ]
    board = dashboard(
        REQUESTS_DASHBOARD_ID,
        "logcollect requests",
        "Requests handled through the crate's HTTP layer: volume by status class, p95 duration "
        "by route, error rate by service, the slowest requests, and the events of a trace.",
        layout,
        {slowest["id"]: "Slowest requests", by_trace["id"]: "Events of a trace"},
    )
    return [by_status, p95_by_route, error_rate, slowest, by_trace, board]


def lens(obj_id, title, description, vis_type, layer_id, columns, column_order, visualization,
         query=NO_QUERY):
    return {
        "id": obj_id,
        "type": "lens",
        "attributes": {
            "title": title,
            "description": description,
            "visualizationType": vis_type,
            "state": {
                "adHocDataViews": {},
                "internalReferences": [],
                "datasourceStates": {
                    "formBased": {
                        "layers": {
                            layer_id: {
                                "columns": columns,
                                "columnOrder": column_order,
                                "incompleteColumns": {},
                                "sampling": 1,
                            }
                        }
                    },
                    "textBased": {"layers": {}},
                },
                "filters": [],
                "query": query,
                "visualization": visualization,
            },
        },
        "references": [
            {
                "type": "index-pattern",
                "id": DATA_VIEW_ID,
                "name": f"indexpattern-datasource-layer-{layer_id}",
            }
        ],
        "coreMigrationVersion": CORE_MIGRATION,
        "typeMigrationVersion": "8.9.0",
        "managed": False,
    }


def xy(layer_id, series_type, x, accessors, split=None):
    layer = {
        "layerId": layer_id,
        "layerType": "data",
        "seriesType": series_type,
        "xAccessor": x,
        "accessors": accessors,
        "position": "top",
        "showGridlines": False,
    }
    if split:
        layer["splitAccessor"] = split
    return {
        "preferredSeriesType": series_type,
        "layers": [layer],
        "legend": {"isVisible": True, "position": "right"},
        "valueLabels": "hide",
        "fittingFunction": "None",
        "axisTitlesVisibilitySettings": {"x": True, "yLeft": True, "yRight": True},
        "tickLabelsVisibilitySettings": {"x": True, "yLeft": True, "yRight": True},
        "gridlinesVisibilitySettings": {"x": True, "yLeft": True, "yRight": True},
    }


def objects():
    data_view = {
        "id": DATA_VIEW_ID,
        "type": "index-pattern",
        "attributes": {
            "title": "logs-logcollect-*",
            "name": "logcollect",
            "timeFieldName": "@timestamp",
            "allowNoIndex": True,
        },
        "references": [],
        "coreMigrationVersion": CORE_MIGRATION,
        "typeMigrationVersion": "8.0.0",
        "managed": False,
    }

    search = {
        "id": SEARCH_ID,
        "type": "search",
        "attributes": {
            "title": "logcollect: latest errors",
            "description": "Events with log.level ERROR, newest first.",
            "columns": ["service.name", "host.hostname", "message", "error.type", "error.message"],
            "sort": [["@timestamp", "desc"]],
            "grid": {},
            "hideChart": False,
            "isTextBasedQuery": False,
            "kibanaSavedObjectMeta": {
                "searchSourceJSON": json.dumps(
                    {
                        "query": ERROR_QUERY,
                        "filter": [],
                        "indexRefName": "kibanaSavedObjectMeta.searchSourceJSON.index",
                    }
                )
            },
        },
        "references": [
            {
                "type": "index-pattern",
                "id": DATA_VIEW_ID,
                "name": "kibanaSavedObjectMeta.searchSourceJSON.index",
            }
        ],
        "coreMigrationVersion": CORE_MIGRATION,
        "typeMigrationVersion": "8.0.0",
        "managed": False,
    }

    by_level = lens(
        "logcollect-lens-events-by-level",
        "logcollect: events over time by log.level",
        "Event count per interval, stacked by log.level.",
        "lnsXY",
        "events",
        {
            "level": terms_column("log.level", 5, "count", "log.level"),
            "ts": date_histogram_column(),
            "count": count_column(),
        },
        ["level", "ts", "count"],
        xy("events", "bar_stacked", "ts", ["count"], split="level"),
    )

    top_services = lens(
        "logcollect-lens-top-services",
        "logcollect: top services",
        "Services (service.name) with the most events.",
        "lnsXY",
        "services",
        {"service": terms_column("service.name", 10, "count", "service.name"), "count": count_column()},
        ["service", "count"],
        xy("services", "bar_horizontal", "service", ["count"]),
    )

    top_hosts = lens(
        "logcollect-lens-top-hosts",
        "logcollect: top hosts",
        "Hosts (host.hostname) with the most events.",
        "lnsXY",
        "hosts",
        {"host": terms_column("host.hostname", 10, "count", "host.hostname"), "count": count_column()},
        ["host", "count"],
        xy("hosts", "bar_horizontal", "host", ["count"]),
    )

    last_error = {
        "label": "Last error",
        "customLabel": True,
        "dataType": "date",
        "operationType": "max",
        "isBucketed": False,
        "scale": "ratio",
        "sourceField": "@timestamp",
        "params": {"emptyAsNull": True},
    }
    errors_by_identity = lens(
        "logcollect-lens-errors-by-identity",
        "logcollect: errors by activity identity",
        "ERROR events per project and application (labels.project, labels.application).",
        "lnsDatatable",
        "identity",
        {
            "project": terms_column("labels.project", 20, "count", "Project"),
            "application": terms_column("labels.application", 20, "count", "Application"),
            "count": count_column(),
            "last": last_error,
        },
        ["project", "application", "count", "last"],
        {
            "layerId": "identity",
            "layerType": "data",
            "columns": [
                {"columnId": "project"},
                {"columnId": "application"},
                {"columnId": "count"},
                {"columnId": "last"},
            ],
            "sorting": {"columnId": "count", "direction": "desc"},
        },
        query=ERROR_QUERY,
    )

    # (panel object, type, x, y, w, h)
    layout = [
        (by_level, "lens", 0, 0, 48, 14),
        (top_services, "lens", 0, 14, 24, 14),
        (top_hosts, "lens", 24, 14, 24, 14),
        (errors_by_identity, "lens", 0, 28, 48, 14),
        (search, "search", 0, 42, 48, 18),
    ]
    panels, references = [], []
    for i, (obj, kind, x, y, w, h) in enumerate(layout, start=1):
        panel_index = f"p{i}"
        panel = {
            "type": kind,
            "panelIndex": panel_index,
            "gridData": {"x": x, "y": y, "w": w, "h": h, "i": panel_index},
            "embeddableConfig": {"enhancements": {}},
            "panelRefName": f"panel_{panel_index}",
        }
        if kind == "search":
            panel["embeddableConfig"]["title"] = "Latest errors"
        panels.append(panel)
        references.append({"type": kind, "id": obj["id"], "name": f"{panel_index}:panel_{panel_index}"})

    dashboard = {
        "id": "logcollect-dashboard",
        "type": "dashboard",
        "attributes": {
            "title": "logcollect overview",
            "description": "Events shipped by the logcollect crate: volume by level, top services "
            "and hosts, errors by activity identity, latest errors.",
            "panelsJSON": json.dumps(panels),
            "optionsJSON": json.dumps(
                {"useMargins": True, "syncColors": False, "syncCursor": True,
                 "syncTooltips": False, "hidePanelTitles": False}
            ),
            "version": 1,
            "timeRestore": True,
            "timeFrom": "now-24h",
            "timeTo": "now",
            "refreshInterval": {"pause": False, "value": 60000},
            "kibanaSavedObjectMeta": {"searchSourceJSON": json.dumps({"query": NO_QUERY, "filter": []})},
        },
        "references": references,
        "coreMigrationVersion": CORE_MIGRATION,
        "typeMigrationVersion": "8.9.0",
        "managed": False,
    }
    return [data_view, search, by_level, top_services, top_hosts, errors_by_identity, dashboard,
            *requests_objects()]


def render():
    return "".join(json.dumps(o, sort_keys=True, separators=(",", ":")) + "\n" for o in objects())


if __name__ == "__main__":
    OUT.write_text(render(), encoding="utf-8")
    print(f"wrote {OUT}")
