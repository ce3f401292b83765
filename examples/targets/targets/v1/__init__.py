# Generated from .proto files by `myko gen` (`make gen`); do not edit.
