import { createRegistry, fromBinary } from "@bufbuild/protobuf";
import { anyUnpack } from "@bufbuild/protobuf/wkt";
import { describe, expect, expectTypeOf, it } from "vitest";
import { ContractError, declaredResult, defineQuery, defineReport, resolveQuery, resolveReport } from "../src/index.js";
import { AllNotes, NoteCount, NoteCount_Filter, NotesByTag } from "./gen/demo/v1/demo_myko.js";
import {
  AddNoteSchema,
  AllNotesSchema,
  CountSchema,
  file_demo_v1_demo,
  NoteCountSchema,
  NoteSchema,
  NotesByTagSchema,
  type Note,
} from "./gen/demo/v1/demo_pb.js";
import type { MessageShape } from "@bufbuild/protobuf";

describe("generated definitions", () => {
  it("pack the parameters and carry the declared result schema", () => {
    const q = NotesByTag({ tag: "work" });
    expect(q.kind).toBe("query");
    expect(q.result).toBe(NoteSchema);
    expect(q.request.typeUrl).toBe("type.googleapis.com/demo.v1.NotesByTag");
    expect(anyUnpack(q.request, NotesByTagSchema)?.tag).toBe("work");
    expectTypeOf<MessageShape<typeof q.result>>().toEqualTypeOf<Note>();
    expect(AllNotes().request.value).toEqual(new Uint8Array());
    const r = NoteCount_Filter({ tag: "x" });
    expect(r.kind).toBe("report");
    expect(r.result).toBe(CountSchema);
    expect(NoteCount.params).toBe(NoteCountSchema);
  });

  it("read the result type from the (myko.v1.query/report) option", () => {
    expect(declaredResult(AllNotesSchema, "query")).toBe("demo.v1.Note");
    expect(declaredResult(NoteCountSchema, "report")).toBe("demo.v1.Count");
  });
});

describe("defineQuery / defineReport", () => {
  it("refuse a result schema other than the declared one (stale generated code)", () => {
    expect(() => defineQuery(AllNotesSchema, CountSchema)).toThrow(
      new ContractError(
        "demo.v1.AllNotes declares result demo.v1.Note, not demo.v1.Count: regenerate the code (make gen / myko gen)",
      ),
    );
  });

  it("refuse a message that is not declared a query or report", () => {
    expect(() => defineQuery(AddNoteSchema, NoteSchema)).toThrow(/demo.v1.AddNote is not a query/);
    expect(() => defineReport(AllNotesSchema, NoteSchema)).toThrow(/demo.v1.AllNotes is not a report/);
  });
});

describe("resolveQuery / resolveReport", () => {
  const registry = createRegistry(file_demo_v1_demo);

  it("find the declared result in a registry, at run time", () => {
    const q = resolveQuery(registry, NotesByTagSchema);
    expect(q.result.typeName).toBe("demo.v1.Note");
    const bytes = q({ tag: "a" }).request.value;
    expect(fromBinary(NotesByTagSchema, bytes).tag).toBe("a");
    expect(resolveReport(registry, NoteCountSchema).result.typeName).toBe("demo.v1.Count");
  });

  it("say which type is missing from the registry", () => {
    expect(() => resolveQuery(createRegistry(), AllNotesSchema)).toThrow(
      "demo.v1.AllNotes returns demo.v1.Note, which the registry does not hold",
    );
  });
});
