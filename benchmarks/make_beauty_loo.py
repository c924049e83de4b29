"""Write the leave-one-out train file and test-user list for Amazon Beauty.

Reads ``Beauty.txt`` (``user item1 item2 ...`` per line, time order) and ``Beauty_time.txt``
(same layout, unix seconds) and writes, into ``--out-dir``:

- ``train.csv``: ``user_id,item_id,timestamp``, every interaction but each user's last one,
  users in file order and each user's items in time order (the file order is the tie-break);
- ``test_users.txt``: every user id, one per line;
- ``test.csv``: ``user_id,item_id,timestamp``, each user's held-out last interaction.

Standard library only, so it runs in either virtual environment.

Usage: python benchmarks/make_beauty_loo.py --data-dir /work/shared/datasets/beauty --out-dir DIR
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=Path("/work/shared/datasets/beauty"))
    parser.add_argument("--name", default="Beauty", help="file stem: NAME.txt and NAME_time.txt")
    parser.add_argument("--out-dir", type=Path, required=True)
    args = parser.parse_args()

    items_path = args.data_dir / f"{args.name}.txt"
    times_path = args.data_dir / f"{args.name}_time.txt"
    args.out_dir.mkdir(parents=True, exist_ok=True)
    n_train = n_users = 0
    with open(items_path) as f_items, open(times_path) as f_times, \
            open(args.out_dir / "train.csv", "w", newline="") as f_train, \
            open(args.out_dir / "test.csv", "w", newline="") as f_test, \
            open(args.out_dir / "test_users.txt", "w") as f_users:
        train = csv.writer(f_train)
        test = csv.writer(f_test)
        train.writerow(["user_id", "item_id", "timestamp"])
        test.writerow(["user_id", "item_id", "timestamp"])
        for line_no, (items_line, times_line) in enumerate(zip(f_items, f_times), start=1):
            user, *items = items_line.split()
            time_user, *times = times_line.split()
            if user != time_user or len(items) != len(times):
                raise ValueError(
                    f"line {line_no}: {items_path.name} and {times_path.name} disagree "
                    f"(user {user} with {len(items)} items vs user {time_user} with {len(times)} timestamps)"
                )
            for item, ts in zip(items[:-1], times[:-1]):
                train.writerow([user, item, ts])
            test.writerow([user, items[-1], times[-1]])
            f_users.write(f"{user}\n")
            n_train += len(items) - 1
            n_users += 1
    print(f"{n_users} users, {n_train} train interactions -> {args.out_dir}")


if __name__ == "__main__":
    main()
