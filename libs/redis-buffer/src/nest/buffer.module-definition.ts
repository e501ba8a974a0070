import { ConfigurableModuleBuilder } from '@nestjs/common';
import type { BufferOptions } from '../core/options.js';

export const {
  ConfigurableModuleClass: ConfigurableBufferModule,
  MODULE_OPTIONS_TOKEN: BUFFER_MODULE_OPTIONS,
  OPTIONS_TYPE: BUFFER_MODULE_OPTIONS_TYPE,
  ASYNC_OPTIONS_TYPE: BUFFER_MODULE_ASYNC_OPTIONS_TYPE,
} = new ConfigurableModuleBuilder<BufferOptions>({ moduleName: 'Buffer' })
  .setClassMethodName('forRoot')
  .setExtras({ isGlobal: true }, (definition, extras) => ({ ...definition, global: extras.isGlobal }))
  .build();
