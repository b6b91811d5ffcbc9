"""The public HTTP contract: the answers no domain package builds, the limits the functions and the document share,
and the OpenAPI document generated from them."""
