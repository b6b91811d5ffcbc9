"""The data stores: media in GridFS (whole files, ranged reads, an upload growing across requests), the MongoDB
and MySQL connections."""
