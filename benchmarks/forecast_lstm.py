"""Why the cash-flow forecast has no LSTM (docs/forecasting.md): a small LSTM on the same series and
the same held-out origins as benchmarks/forecast.py, its MASE against seasonal naive's and its fit
time. torch is not a project dependency; without it this script says so and exits 0.

    # in a throwaway venv outside the repository: python -m venv /tmp/torchvenv &&
    #   /tmp/torchvenv/bin/pip install torch==2.13.0
    PYTHONPATH=/tmp/torchvenv/lib/python3.11/site-packages .venv/bin/python benchmarks/forecast_lstm.py

The network: 28 standardized days in, the next 30 days out (direct multi-output, so no error
feedback), one LSTM layer of 32 units and a linear head, Adam at 0.01 for 300 full-batch epochs on
every window of the history before the origin; the best of what a short daily series can feed."""

import sys
import time

import _common
import numpy as np
from forecast import prophet_series, simulator_series  # benchmarks/forecast.py: the same series

from ml import forecast as ml

WINDOW, HORIZON = 28, 30


def lstm_forecast(torch, y: np.ndarray, seed: int) -> tuple[np.ndarray, float]:
    torch.manual_seed(seed)
    torch.set_num_threads(1)  # the comparison's CPU seconds are one core's, like the other models' fits
    mean, std = float(np.mean(y)), float(np.std(y)) or 1.0
    z = (y - mean) / std
    starts = range(len(z) - WINDOW - HORIZON + 1)
    x = torch.tensor(np.array([z[s : s + WINDOW] for s in starts]), dtype=torch.float32).unsqueeze(-1)
    target = torch.tensor(np.array([z[s + WINDOW : s + WINDOW + HORIZON] for s in starts]), dtype=torch.float32)

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lstm = torch.nn.LSTM(1, 32, batch_first=True)
            self.head = torch.nn.Linear(32, HORIZON)

        def forward(self, batch):
            out, _ = self.lstm(batch)
            return self.head(out[:, -1])

    net = Net()
    optimizer = torch.optim.Adam(net.parameters(), lr=0.01)
    started = time.process_time()
    for _ in range(300):
        optimizer.zero_grad()
        loss = torch.nn.functional.mse_loss(net(x), target)
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        ahead = net(torch.tensor(z[-WINDOW:], dtype=torch.float32).reshape(1, WINDOW, 1)).numpy()[0]
    return ahead * std + mean, time.process_time() - started


def compare(torch, name: str, dates, y, settings: ml.Settings, origins: int) -> None:
    lstm_mase, naive_mase, seconds = [], [], []
    for k in range(origins):
        origin = len(y) - HORIZON - 30 * (origins - 1 - k)
        actual = y[origin : origin + HORIZON]
        predicted, took = lstm_forecast(torch, y[:origin], seed=k)
        naive = ml.seasonal_naive(y[:origin], dates[:origin], dates[origin : origin + HORIZON], settings)
        lstm_mase.append(ml.mase(actual, predicted, y[:origin], settings.season_length))
        naive_mase.append(ml.mase(actual, naive.mean, y[:origin], settings.season_length))
        seconds.append(took)
    lstm, naive = float(np.mean(lstm_mase)), float(np.mean(naive_mase))
    print(
        f"{name}: LSTM MASE {lstm:.3f} vs seasonal naive {naive:.3f}: ratio {lstm / naive:.3f}; "
        f"fit {np.mean(seconds):.1f} CPU-s per origin (one thread), {origins} origins"
    )


def main() -> int:
    seeds = int(sys.argv[sys.argv.index("--seeds") + 1]) if "--seeds" in sys.argv else 3
    try:
        import torch
    except ImportError:
        print("torch is not installed: skipped (see this script's docstring to run it in a throwaway venv)")
        return 0
    print(_common.machine(), f"torch {torch.__version__}")
    for seed in range(seeds):
        dates, y = simulator_series(7 + seed, 400)
        compare(torch, f"simulator seed {7 + seed}", dates, y, ml.Settings(), 4)
    dates, y = prophet_series()
    trading = ml.Settings(season_length=5, holiday_country=None)
    compare(torch, "prophet/tests/data.csv, the price", dates, y, trading, 8)
    compare(torch, "prophet/tests/data.csv, the daily change", dates[1:], np.diff(y), trading, 8)
    return 0


if __name__ == "__main__":
    sys.exit(main())
