import os

# timm (when installed) must not spend 46 s retrying hub downloads: nothing is fetched at run time.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
