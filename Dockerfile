# One image for both front doors: `cei api` (default) or `cei app`.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    CEI_API_HOST=0.0.0.0 \
    CEI_DATA_DIR=/srv/cei/data

RUN useradd --create-home --uid 10001 cei
# WORKDIR holds .streamlit/, which Streamlit reads from the working directory.
WORKDIR /srv/cei
COPY pyproject.toml README.md ./
COPY core ./core
COPY api ./api
COPY app ./app
COPY .streamlit ./.streamlit
RUN pip install . && mkdir -p /srv/cei/data && chown cei:cei /srv/cei/data

USER cei
EXPOSE 8000 8501
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s \
  CMD python -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:8000/api/v1/health', timeout=4)" || exit 1
CMD ["cei", "api"]
