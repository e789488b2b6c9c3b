"""Where every table lives under the data directory: the one place that knows the paths.

order_events/*.csv                               the landing
raw/<event asset>/                               daily raw events          (Delta tables:
feature_store/historical/<entity>/<feature set>/ daily states               _delta_log/ and
datasets/<training set>/                         training sets              Parquet files)
online_store.db                                  the default (SQLite) online store
"""

LANDING_DIR = "order_events"
LANDING_FILE = f"{LANDING_DIR}/input.csv"
RAW_DIR = "raw"
FEATURE_STORE_DIR = "feature_store/historical"
DATASETS_DIR = "datasets"
ONLINE_STORE_FILE = "online_store.db"


def raw_table(asset: str) -> str:
    return f"{RAW_DIR}/{asset}"


def feature_set_table(entity: str, feature_set: str) -> str:
    return f"{FEATURE_STORE_DIR}/{entity}/{feature_set}"


def dataset_table(name: str) -> str:
    return f"{DATASETS_DIR}/{name}"
