"""GetItem requests.

https://learn.microsoft.com/en-us/exchange/client-developer/web-service-reference/getitem
"""

from __future__ import annotations

from lxml import etree

from ews_parser.common import ParseContext, child_elements, read_item_targets
from ews_parser.fields import read_path
from ews_parser.values import FieldPath, GetItemRequest
from ews_parser.xml import m, t, text


def read_shape(shape: etree._Element | None) -> tuple[str | None, tuple[FieldPath, ...]]:
    """`ItemShape` / `FolderShape`: BaseShape and AdditionalProperties."""
    if shape is None:
        return None, ()
    extra = tuple(read_path(p) for p in child_elements(shape.find(t("AdditionalProperties"))))
    return text(shape.find(t("BaseShape"))), extra


def read_request(op: etree._Element, ctx: ParseContext) -> GetItemRequest:
    base_shape, extra = read_shape(op.find(m("ItemShape")))
    return GetItemRequest(
        base_shape=base_shape,
        additional_properties=extra,
        targets=read_item_targets(op.find(m("ItemIds"))),
    )
