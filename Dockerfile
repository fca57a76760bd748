# CPU image that installs dereverb from the lock file (the exact tested versions) and runs the
# quickstart training by default.
#   docker build -t dereverb . && docker run --rm -v "$PWD/runs:/app/runs" dereverb
# (On a GPU host add --gpus all; the locked torch is PyPI's CUDA build, which also runs on CPU.)
FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 MPLBACKEND=Agg
RUN apt-get update && apt-get install -y --no-install-recommends build-essential libsndfile1 \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY requirements.lock ./
RUN pip install -r requirements.lock
COPY pyproject.toml README.md ./
COPY dereverb ./dereverb
COPY configs ./configs
RUN pip install --no-deps .
CMD ["python", "-m", "dereverb.train", "--config", "configs/quickstart.yaml"]
