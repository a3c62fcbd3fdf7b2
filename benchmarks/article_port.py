"""The article's hand-written-cell RNN, ported literally to ``tf.compat.v1`` graph mode.

This is the benchmark baseline: the code of the article (seed/original-article-zh.txt,
section 4, "implementing the RNN of the example ourselves"), changed only where TF2
requires it (``tf.`` -> ``tf.compat.v1.`` for placeholders, variable scopes, Session
and the Adagrad optimizer) and instrumented with timers. It keeps everything that
makes it slow: the Python-loop data generator (gen_data / gen_batch / gen_epochs),
one ``sess.run`` per training step with feed_dict, the statically unrolled graph.

Run it in its own process (it disables eager execution for the whole process)::

    python benchmarks/article_port.py --num-steps 5 --state-size 4 --epochs 1

The last line of stdout is one JSON object: ``data_s`` (seconds spent generating
data, all epochs), ``epoch_data_s`` and ``epoch_train_s`` (per epoch: data
generation, and training steps = the sess.run loop), ``graph_s`` (import TF and
build the graph), ``wall_s`` (process start to this line), ``peak_rss_mb``
(``ru_maxrss`` of this process), ``losses`` (the article's 100-step mean losses).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time

T_PROCESS = time.perf_counter()  # as close to process start as Python allows

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import numpy as np  # noqa: E402

DATA_TIME = [0.0]  # seconds spent inside the article's generators (instrumentation)


def gen_data(size=1000000):
    """The article's generator: a Python loop over every time step."""
    t0 = time.perf_counter()
    X = np.array(np.random.choice(2, size=(size,)))
    Y = []
    for i in range(size):
        threshold = 0.5
        if X[i - 3] == 1:
            threshold += 0.5
        if X[i - 8] == 1:
            threshold -= 0.25
        if np.random.rand() > threshold:
            Y.append(0)
        else:
            Y.append(1)
    out = X, np.array(Y)
    DATA_TIME[0] += time.perf_counter() - t0
    return out


def gen_batch(raw_data, batch_size, num_step):
    """The article's batching: 200 rows, then num_step columns per training step."""
    t0 = time.perf_counter()
    raw_x, raw_y = raw_data
    data_length = len(raw_x)
    batch_patition_length = data_length // batch_size
    data_x = np.zeros([batch_size, batch_patition_length], dtype=np.int32)
    data_y = np.zeros([batch_size, batch_patition_length], dtype=np.int32)
    for i in range(batch_size):
        data_x[i] = raw_x[batch_patition_length * i:batch_patition_length * (i + 1)]
        data_y[i] = raw_y[batch_patition_length * i:batch_patition_length * (i + 1)]
    epoch_size = batch_patition_length // num_step
    DATA_TIME[0] += time.perf_counter() - t0
    for i in range(epoch_size):
        t0 = time.perf_counter()
        x = data_x[:, i * num_step:(i + 1) * num_step]
        y = data_y[:, i * num_step:(i + 1) * num_step]
        DATA_TIME[0] += time.perf_counter() - t0
        yield (x, y)


def build_graph(tf, batch_size, num_steps, num_classes, state_size, learning_rate):
    """The article's graph, verbatim apart from the tf.compat.v1 names."""
    v1 = tf.compat.v1
    x = v1.placeholder(tf.int32, [batch_size, num_steps], name="x")
    y = v1.placeholder(tf.int32, [batch_size, num_steps], name="y")
    init_state = tf.zeros([batch_size, state_size])
    x_one_hot = tf.one_hot(x, num_classes)
    rnn_inputs = tf.unstack(x_one_hot, axis=1)
    with v1.variable_scope("rnn_cell"):
        W = v1.get_variable("W", [num_classes + state_size, state_size])
        b = v1.get_variable("b", [state_size], initializer=v1.constant_initializer(0.0))

    def rnn_cell(rnn_input, state):
        with v1.variable_scope("rnn_cell", reuse=True):
            W = v1.get_variable("W", [num_classes + state_size, state_size])
            b = v1.get_variable("b", [state_size], initializer=v1.constant_initializer(0.0))
        return tf.tanh(tf.matmul(tf.concat([rnn_input, state], 1), W) + b)

    state = init_state
    rnn_outputs = []
    for rnn_input in rnn_inputs:
        state = rnn_cell(rnn_input, state)
        rnn_outputs.append(state)
    final_state = rnn_outputs[-1]
    with v1.variable_scope("softmax"):
        W = v1.get_variable("W", [state_size, num_classes])
        b = v1.get_variable("b", [num_classes], initializer=v1.constant_initializer(0.0))
    logits = [tf.matmul(rnn_output, W) + b for rnn_output in rnn_outputs]
    y_as_list = tf.unstack(y, num=num_steps, axis=1)
    losses = [tf.nn.sparse_softmax_cross_entropy_with_logits(labels=label, logits=logit)
              for logit, label in zip(logits, y_as_list)]
    total_loss = tf.reduce_mean(losses)
    train_step = v1.train.AdagradOptimizer(learning_rate).minimize(total_loss)
    return x, y, init_state, losses, total_loss, final_state, train_step


def train_rnn(tf, graph, num_epochs, num_steps, batch_size, state_size, data_size, verbose):
    """The article's training loop; returns (100-step mean losses, per-epoch timings)."""
    x, y, init_state, losses, total_loss, final_state, train_step = graph

    def gen_epochs(n, num_steps):
        for i in range(n):
            yield gen_batch(gen_data(data_size), batch_size, num_steps)

    timings = []
    with tf.compat.v1.Session() as sess:
        sess.run(tf.compat.v1.global_variables_initializer())
        training_losses = []
        epochs = gen_epochs(num_epochs, num_steps)
        for idx in range(num_epochs):
            d0, t0 = DATA_TIME[0], time.perf_counter()
            epoch = next(epochs)
            training_loss = 0
            training_state = np.zeros((batch_size, state_size))
            if verbose:
                print("\nepoch", idx, file=sys.stderr)
            for step, (X, Y) in enumerate(epoch):
                tr_losses, training_loss_, training_state, _ = \
                    sess.run([losses, total_loss, final_state, train_step],
                             feed_dict={x: X, y: Y, init_state: training_state})
                training_loss += training_loss_
                if step % 100 == 0 and step > 0:
                    if verbose:
                        print("step {0} mean loss {1}".format(step, training_loss / 100), file=sys.stderr)
                    training_losses.append(training_loss / 100)
                    training_loss = 0
            total, data = time.perf_counter() - t0, DATA_TIME[0] - d0
            timings.append({"data_s": data, "train_s": total - data})
    return training_losses, timings


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--num-steps", type=int, default=5)
    ap.add_argument("--state-size", type=int, default=4)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--data-size", type=int, default=1_000_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--verbose", action="store_true", help="print the article's loss lines to stderr")
    args = ap.parse_args(argv)

    np.random.seed(args.seed)
    t0 = time.perf_counter()
    import tensorflow as tf

    tf.compat.v1.disable_eager_execution()
    tf.compat.v1.set_random_seed(args.seed)
    graph = build_graph(tf, 200, args.num_steps, 2, args.state_size, 0.1)
    graph_s = time.perf_counter() - t0
    losses, timings = train_rnn(tf, graph, args.epochs, args.num_steps, 200, args.state_size,
                                args.data_size, args.verbose)
    out = {
        "impl": "article_port", "num_steps": args.num_steps, "state_size": args.state_size,
        "epochs": args.epochs, "data_size": args.data_size, "seed": args.seed,
        "graph_s": graph_s, "data_s": DATA_TIME[0],
        "epoch_data_s": [t["data_s"] for t in timings], "epoch_train_s": [t["train_s"] for t in timings],
        "final_loss": float(losses[-1]) if losses else None, "losses": [float(v) for v in losses],
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
        "wall_s": time.perf_counter() - T_PROCESS,
    }
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()
