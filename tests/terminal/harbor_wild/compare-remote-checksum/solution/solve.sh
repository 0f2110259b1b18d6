#!/bin/bash
cd /app && sha256sum payload.bin > payload.sha256
