import { create, type DescMessage, type MessageInitShape } from "@bufbuild/protobuf";
import { anyPack, type Any } from "@bufbuild/protobuf/wkt";

/** Packs a declared query, report or command message into the Any the buses take. */
export function pack<Desc extends DescMessage>(schema: Desc, init?: MessageInitShape<Desc>): Any {
  return anyPack(schema, create(schema, init));
}
