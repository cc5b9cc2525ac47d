"""kassa's HTTP resolvers (the api, tax and meter-ingest functions).

Every pydantic model defined after this package is imported builds its validator on first use, not
at class creation (pydantic's ``defer_build``, inherited from ``BaseModel``'s config): a REST
function's cold start defines ~100 request and domain models and a request uses a handful, so
building them all at import cost ~20 % of its init (docs/benchmarks.md, cold starts). Validation,
errors and the OpenAPI document are unchanged; the first request of a route pays for its models.
"""

from pydantic import BaseModel

BaseModel.model_config["defer_build"] = True
