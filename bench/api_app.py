"""The threadtask app plus a bare JSON endpoint, for bench/api.py.

Both are served by the same gunicorn worker, so the bare endpoint measures
the cost of gunicorn, Flask and JSON alone: the baseline the API is compared to.
"""

from flask import jsonify

from wsgi import create_app

app = create_app()


@app.get("/bench/bare")
def bare():
    return jsonify({"id": 1, "status": "open"})
