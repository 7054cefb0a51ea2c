"""The peer lootlog is measured against: the classic game API that lootlog grew out of —
Flask, and kafka-python sending each event to the `events` topic. It waits for Kafka's
acknowledgement (acks=all) before answering, as lootlog does, so both answer only for
events that are in the log."""
import argparse
import json

from flask import Flask, request
from kafka import KafkaProducer

parser = argparse.ArgumentParser()
parser.add_argument("--port", type=int, required=True)
parser.add_argument("--brokers", required=True)
parser.add_argument("--topic", required=True)
args = parser.parse_args()

app = Flask(__name__)
producer = KafkaProducer(bootstrap_servers=args.brokers, acks="all", linger_ms=2)


def log_to_kafka(event):
    event.update(request.headers)
    user = request.args.get("user_id", "anonymous")
    producer.send(args.topic, key=user.encode(), value=json.dumps(event).encode()).get(timeout=10)


@app.route("/")
def default_response():
    log_to_kafka({"event_type": "default"})
    return "This is the default response!\n"


@app.route("/purchase_a_sword")
def purchase_a_sword():
    log_to_kafka({"event_type": "purchase_sword"})
    return "Sword Purchased!\n"


if __name__ == "__main__":
    app.run(host="127.0.0.1", port=args.port, threaded=True)
