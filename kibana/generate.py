#!/usr/bin/env python3
"""Writes kibana/logcollect.ndjson: the Kibana saved objects of the logcollect stack.

Edit this file, not the NDJSON (whose nested JSON strings are painful to edit by hand), then run
    python3 kibana/generate.py
tests/elk checks that the NDJSON is exactly what this script writes.

Objects: a data view on logs-logcollect-*, a saved search of errors (also the "latest errors"
table of the dashboard), four Lens visualizations and one dashboard holding them all.
Only fields the crate's `ecs` encoder emits are used (docs/formats.md).
"""
import json
import pathlib

OUT = pathlib.Path(__file__).with_name("logcollect.ndjson")

CORE_MIGRATION = "8.8.0"
DATA_VIEW_ID = "logcollect-data-view"
SEARCH_ID = "logcollect-errors-search"
ERROR_QUERY = {"query": 'log.level : "ERROR"', "language": "kuery"}
NO_QUERY = {"query": "", "language": "kuery"}


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
    return [data_view, search, by_level, top_services, top_hosts, errors_by_identity, dashboard]


def render():
    return "".join(json.dumps(o, sort_keys=True, separators=(",", ":")) + "\n" for o in objects())


if __name__ == "__main__":
    OUT.write_text(render(), encoding="utf-8")
    print(f"wrote {OUT}")
