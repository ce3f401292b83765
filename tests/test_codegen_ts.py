"""myko/codegen_ts.py: the typed query/report definitions emitted for TypeScript."""

from __future__ import annotations

from pathlib import Path

import pytest
from google.protobuf import descriptor_pb2
from grpc_tools import protoc

from myko.codegen_ts import es_options, live_definitions
from myko.errors import CodegenError

ROOT = Path(__file__).resolve().parent.parent

ENTITIES = """
syntax = "proto3";
package shop.v1;
import "myko/v1/item.proto";
message Order { myko.v1.MItem item = 1; string customer = 2; }
message Total { int64 cents = 1; }
"""

QUERIES = """
syntax = "proto3";
package shop.v1;
import "myko/v1/options.proto";
import "shop/v1/entities.proto";

// Orders of one customer,
// newest first.
message OrdersOf {
  option (myko.v1.query) = { result: "shop.v1.Order" };
  string customer = 1;
}

message Revenue {
  option (myko.v1.report) = { result: ".shop.v1.Total" };
}

// A report whose value is a framework message.
message LastWatermark {
  option (myko.v1.report) = { result: "myko.v1.Watermark" };
}
"""


def _compile(tmp_path: Path, files: dict[str, str]) -> descriptor_pb2.FileDescriptorSet:
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    out = tmp_path / "set.fds"
    well_known = Path(protoc.__file__).parent / "_proto"
    args = [f"-I{tmp_path}", f"-I{ROOT / 'proto'}", f"-I{well_known}"]
    code = protoc.main(
        ["protoc", *args, f"--descriptor_set_out={out}", "--include_imports", "--include_source_info", *files]
    )
    assert code == 0
    return descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes())


def test_each_query_and_report_is_bound_to_its_declared_result(tmp_path: Path) -> None:
    files = {"shop/v1/entities.proto": ENTITIES, "shop/v1/queries.proto": QUERIES}
    out = live_definitions(_compile(tmp_path, files), list(files))
    # entities.proto declares nothing: no module for it.
    assert list(out) == ["shop/v1/queries_myko.ts"]
    ts = out["shop/v1/queries_myko.ts"]
    assert 'import { defineQuery, defineReport, type QueryDef, type ReportDef } from "@myko/client";' in ts
    assert 'import { WatermarkSchema } from "@myko/client/myko/v1/item_pb.js";' in ts
    assert 'import { OrderSchema, TotalSchema } from "./entities_pb.js";' in ts
    assert (
        "export const OrdersOf: QueryDef<typeof OrdersOfSchema, typeof OrderSchema> = /*@__PURE__*/\n"
        "  defineQuery(OrdersOfSchema, OrderSchema);"
    ) in ts
    # A leading dot in the option is the same full name.
    assert "defineReport(RevenueSchema, TotalSchema);" in ts
    assert "defineReport(LastWatermarkSchema, WatermarkSchema);" in ts
    # The proto comment carries over, with what the definition returns.
    assert (
        " * Orders of one customer,\n * newest first.\n *\n * query shop.v1.OrdersOf -> shop.v1.Order[]\n"
        in ts
    )


def test_a_result_that_is_no_message_is_refused_with_its_name(tmp_path: Path) -> None:
    bad = QUERIES.replace('result: "shop.v1.Order"', 'result: "Order"')
    files = {"shop/v1/entities.proto": ENTITIES, "shop/v1/queries.proto": bad}
    with pytest.raises(
        CodegenError, match=r"shop.v1.OrdersOf .*\(myko.v1.query\).result 'Order' is not a message"
    ):
        live_definitions(_compile(tmp_path, files), list(files))


def test_a_message_cannot_be_both_a_query_and_a_report(tmp_path: Path) -> None:
    both = QUERIES.replace(
        'option (myko.v1.query) = { result: "shop.v1.Order" };',
        'option (myko.v1.query) = { result: "shop.v1.Order" };\n  option (myko.v1.report) = { result: "shop.v1.Total" };',
    )
    files = {"shop/v1/entities.proto": ENTITIES, "shop/v1/queries.proto": both}
    with pytest.raises(CodegenError, match=r"shop.v1.OrdersOf .* both a query and a report"):
        live_definitions(_compile(tmp_path, files), list(files))


def test_application_code_imports_the_framework_from_the_package() -> None:
    assert es_options(framework=False) == (
        "target=ts,import_extension=js,rewrite_imports=./myko/**/*_pb.js:@myko/client"
    )
    assert es_options(framework=True) == "target=ts,import_extension=js"
