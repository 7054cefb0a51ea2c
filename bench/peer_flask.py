"""The peer lootlog's writes are measured against: the classic game API that lootlog grew
out of — Flask, and kafka-python sending each event to a topic. It waits for Kafka's
acknowledgement (acks=all) before answering, as lootlog does, so both answer only for
events that are in the log.

Served two ways by bench/run.py:
  the way a team deploys it:  PEER_BROKERS=... PEER_TOPIC=... gunicorn -w 5 -b ADDR peer_flask:app
  the Flask dev server:       python bench/peer_flask.py --port P --brokers B --topic T
"""
import argparse
import json
import os

from flask import Flask, request
from kafka import KafkaProducer

app = Flask(__name__)
_producer = None


def producer():
    # Made on first use, so each gunicorn worker (a forked process) has its own.
    global _producer
    if _producer is None:
        _producer = KafkaProducer(bootstrap_servers=os.environ["PEER_BROKERS"], acks="all",
                                  linger_ms=2)
    return _producer


def log_to_kafka(event):
    event.update(request.headers)
    user = request.args.get("user_id", "anonymous")
    producer().send(os.environ["PEER_TOPIC"], key=user.encode(),
                    value=json.dumps(event).encode()).get(timeout=10)


@app.route("/")
def default_response():
    log_to_kafka({"event_type": "default"})
    return "This is the default response!\n"


@app.route("/purchase_a_sword")
def purchase_a_sword():
    log_to_kafka({"event_type": "purchase_sword"})
    return "Sword Purchased!\n"


@app.route("/healthz")
def healthz():
    return "ok\n"


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--brokers", required=True)
    parser.add_argument("--topic", required=True)
    args = parser.parse_args()
    os.environ["PEER_BROKERS"] = args.brokers
    os.environ["PEER_TOPIC"] = args.topic
    app.run(host="127.0.0.1", port=args.port, threaded=True)
