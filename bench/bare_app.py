"""The baseline for bench/domain_api.py: a bare Flask app answering one small JSON document."""

from flask import Flask, jsonify

app = Flask(__name__)


@app.get("/json")
def json_endpoint():  # type: ignore[no-untyped-def]
    return jsonify(id=1, status="approved", reason="baseline", datasets=["digits-a"])
